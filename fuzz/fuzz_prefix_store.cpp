// The on-disk prefix cache (--kv-cache-dir, src/kv/prefix_store.h) on arbitrary files, read into a
// small KV pool and imported into a radix tree as a restarting rank does. A bad file must be
// refused with a reason (never a throw) and allocate nothing; an accepted one must give a tree whose
// pages hold the file's bytes, write back to the same bytes, and return every page to the pool when
// the tree is evicted. Byte 0 of the input: bit 0 rewrites the file's trailing checksum so that the
// fuzzer reaches what lies past it (a mutated file otherwise fails the checksum), bits 1-2 pick the
// pool's size (fewer pages than entries keeps only the leading ones).
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "kv/kv_pool.h"
#include "kv/prefix_store.h"
#include "kv/radix_cache.h"

namespace {

const std::string& temp_path(const char* suffix) {
  static const std::string base = "/tmp/dpserve_fuzz_" + std::to_string(::getpid());
  static std::string paths[2] = {base + ".kvcache", base + ".kvcache.out"};
  static const bool cleanup = std::atexit([] {
    for (const auto& p : paths) {
      std::remove(p.c_str());
      std::remove((p + ".tmp").c_str());
    }
  }) == 0;
  (void)cleanup;
  return std::strcmp(suffix, "out") == 0 ? paths[1] : paths[0];
}

std::vector<unsigned char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The file's checksum as prefix_store.cpp defines it (a multiply-xorshift over 8-byte words, the
// tail word tagged with its length, then the byte count), written independently from its comment
// and format: if the two disagreed, seeds written by write_prefix_file would be refused here.
uint64_t file_checksum(const unsigned char* p, size_t n) {
  uint64_t h = 0x6a09e667f3bcc908ull;
  auto mix = [&h](uint64_t w) {
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 29;
  };
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    mix(w);
  }
  uint64_t tail = 0;
  std::memcpy(&tail, p + i, n - i);
  mix(tail ^ (uint64_t(n - i) << 56));
  mix(uint64_t(n));
  return h;
}

dpserve::KVPoolConfig pool_config(int64_t n_pages) {
  dpserve::KVPoolConfig c;  // 1 layer, 1 KV head of 2 values, 4 positions a page: 64-byte pages
  c.n_layers = 1;
  c.n_kv_heads = 1;
  c.head_dim = 2;
  c.page_size = 4;
  c.n_pages = n_pages;
  return c;
}

const dpserve::PrefixIdentity kIdentity = {{"model", "fuzz"}, {"kv", "f32"}};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool fix_checksum = data[0] & 1;
  static const int64_t kPages[4] = {1, 3, 8, 64};
  const int64_t n_pages = kPages[(data[0] >> 1) & 3];
  std::vector<unsigned char> file(data + 1, data + size);
  if (fix_checksum && file.size() >= 8) {
    const uint64_t sum = file_checksum(file.data(), file.size() - 8);
    std::memcpy(file.data() + file.size() - 8, &sum, 8);
  }
  const std::string& path = temp_path("in");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(file.data()), std::streamsize(file.size()));
  }

  dpserve::KVPool pool(pool_config(n_pages));
  std::vector<dpserve::RadixCache::Entry> entries;
  const std::string why = dpserve::read_prefix_file(path, kIdentity, pool, entries);
  if (!why.empty()) {
    FUZZ_EXPECT(entries.empty() && pool.free_pages() == n_pages);
    return 0;
  }

  // Accepted: the leading entries the pool holds, each on its own page with the file's bytes.
  const int64_t page_bytes = pool.config().bytes_per_page();
  const int64_t page_size = pool.page_size();
  const int64_t entry_bytes = 8 + page_size * 4;
  const std::string id_text = "model=fuzz\nkv=f32\n";
  const int64_t head = 8 + 8 + int64_t(id_text.size()) + 3 * 8;
  const int64_t body = int64_t(file.size()) - head - 8;
  FUZZ_EXPECT(body >= 0 && body % (entry_bytes + page_bytes) == 0);
  const int64_t n = body / (entry_bytes + page_bytes);
  FUZZ_EXPECT(int64_t(entries.size()) == std::min(n, n_pages));
  FUZZ_EXPECT(pool.free_pages() == n_pages - int64_t(entries.size()));
  std::set<int32_t> pages;
  std::vector<unsigned char> page(static_cast<size_t>(page_bytes));
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    FUZZ_EXPECT(e.parent >= -1 && e.parent < int64_t(i) && int64_t(e.key.size()) == page_size);
    FUZZ_EXPECT(e.page >= 0 && e.page < n_pages && pages.insert(e.page).second);
    const size_t entry_at = size_t(head) + i * size_t(entry_bytes);
    FUZZ_EXPECT(std::memcmp(&e.parent, file.data() + entry_at, 8) == 0);
    FUZZ_EXPECT(std::memcmp(e.key.data(), file.data() + entry_at + 8, size_t(page_size) * 4) == 0);
    pool.copy_page_out(e.page, page.data());
    const size_t page_at = size_t(head + n * entry_bytes) + i * size_t(page_bytes);
    FUZZ_EXPECT(std::memcmp(page.data(), file.data() + page_at, page.size()) == 0);
  }

  // A whole file written back is the same file: nothing is lost or reordered on the way in.
  if (int64_t(entries.size()) == n) {
    dpserve::write_prefix_file(temp_path("out"), kIdentity, entries, pool);
    FUZZ_EXPECT(read_all(temp_path("out")) == file);
  }

  // Into a tree as a rank adopts it; a refusal (a duplicate node) leaves the pages to the caller.
  {
    dpserve::RadixCache cache(pool);
    if (cache.import_nodes(entries)) {
      FUZZ_EXPECT(cache.cached_pages() == int64_t(entries.size()));
      // Every node is found again from its path's tokens.
      for (size_t i = 0; i < entries.size(); ++i) {
        std::vector<int32_t> tokens;
        int64_t depth = 0;
        for (int64_t at = int64_t(i); at >= 0; at = entries[size_t(at)].parent, ++depth)
          tokens.insert(tokens.begin(), entries[size_t(at)].key.begin(), entries[size_t(at)].key.end());
        const std::vector<int32_t> got = cache.match(tokens, depth);
        FUZZ_EXPECT(int64_t(got.size()) == depth && got.back() == entries[i].page);
        for (int32_t p : got) pool.release(p);
      }
      FUZZ_EXPECT(cache.evict(n_pages) == int64_t(entries.size()));
      FUZZ_EXPECT(cache.cached_pages() == 0);
    } else {
      FUZZ_EXPECT(cache.cached_pages() == 0);
      for (const auto& e : entries) pool.release(e.page);
    }
  }
  FUZZ_EXPECT(pool.free_pages() == n_pages);
  return 0;
}
