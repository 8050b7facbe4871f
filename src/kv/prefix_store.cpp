#include "kv/prefix_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "core/check.h"

namespace dpserve {

namespace {

constexpr char kMagic[8] = {'D', 'P', 'S', 'K', 'V', 'C', '0', '1'};

// A streaming 64-bit checksum over 8-byte words (a multiply-xorshift per word): fast enough for
// hundreds of MB at start-up, and any changed, missing or extra byte changes it.
class Checksum {
 public:
  void feed(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    total_ += n;
    while (n > 0) {
      if (fill_ == 0 && n >= 8) {
        uint64_t w;
        std::memcpy(&w, b, 8);
        mix(w);
        b += 8, n -= 8;
        continue;
      }
      buf_[fill_++] = *b++, --n;
      if (fill_ == 8) {
        uint64_t w;
        std::memcpy(&w, buf_, 8);
        mix(w);
        fill_ = 0;
      }
    }
  }
  uint64_t value() const {
    Checksum c = *this;
    uint64_t w = 0;
    std::memcpy(&w, c.buf_, c.fill_);
    c.mix(w ^ (uint64_t(c.fill_) << 56));
    c.mix(total_);
    return c.h_;
  }

 private:
  void mix(uint64_t w) {
    h_ = (h_ ^ w) * 0x9e3779b97f4a7c15ull;
    h_ ^= h_ >> 29;
  }
  uint64_t h_ = 0x6a09e667f3bcc908ull;
  unsigned char buf_[8] = {};
  size_t fill_ = 0;
  uint64_t total_ = 0;
};

std::string identity_text(const PrefixIdentity& id) {
  std::string s;
  for (const auto& [k, v] : id) s += k + "=" + v + "\n";
  return s;
}

// What differs between the file's identity and ours, for the warning.
std::string identity_diff(const std::string& file_text, const PrefixIdentity& ours) {
  std::map<std::string, std::string> file;
  size_t at = 0;
  while (at < file_text.size()) {
    size_t nl = file_text.find('\n', at);
    if (nl == std::string::npos) nl = file_text.size();
    const std::string line = file_text.substr(at, nl - at);
    const size_t eq = line.find('=');
    if (eq != std::string::npos) file[line.substr(0, eq)] = line.substr(eq + 1);
    at = nl + 1;
  }
  std::string out;
  for (const auto& [k, v] : ours) {
    auto it = file.find(k);
    const std::string was = it == file.end() ? "(absent)" : it->second;
    if (was != v) out += fmt::format("{}{}: the file has {}, this server {}", out.empty() ? "" : "; ", k, was, v);
  }
  for (const auto& [k, v] : file) {
    bool known = false;
    for (const auto& [k2, v2] : ours) known = known || k2 == k;
    if (!known) out += fmt::format("{}{}: the file has {}, this server none", out.empty() ? "" : "; ", k, v);
  }
  return out;
}

class Writer {
 public:
  Writer(int fd, const std::string& path) : fd_(fd), path_(path) {}
  void put(const void* p, size_t n) {
    sum_.feed(p, n);
    raw(p, n);
  }
  void raw(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    while (n > 0) {
      const ssize_t w = ::write(fd_, b, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail("--kv-cache-dir: cannot write {}: {}", path_, std::strerror(errno));
      b += w, n -= size_t(w), bytes_ += w;
    }
  }
  template <class T> void put_value(T v) { put(&v, sizeof v); }
  uint64_t checksum() const { return sum_.value(); }
  int64_t bytes() const { return bytes_; }

 private:
  int fd_;
  const std::string& path_;
  Checksum sum_;
  int64_t bytes_ = 0;
};

class Reader {
 public:
  explicit Reader(int fd) : fd_(fd) {}
  // False at end of file (or a read error) before n bytes.
  bool get(void* p, size_t n) {
    auto* b = static_cast<unsigned char*>(p);
    size_t left = n;
    while (left > 0) {
      const ssize_t r = ::read(fd_, b, left);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      b += r, left -= size_t(r);
    }
    sum_.feed(p, n);
    return true;
  }
  template <class T> bool get_value(T& v) { return get(&v, sizeof v); }
  uint64_t checksum() const { return sum_.value(); }

 private:
  int fd_;
  Checksum sum_;
};

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// A rename or unlink in `path`'s directory reaches the disk with the directory.
void sync_dir_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
  Fd d;
  d.fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d.fd >= 0) ::fsync(d.fd);
}

}  // namespace

uint64_t prefix_tree_digest(const std::vector<RadixCache::Entry>& entries) {
  Checksum c;
  for (const auto& e : entries) {
    c.feed(&e.parent, sizeof e.parent);
    c.feed(e.key.data(), e.key.size() * sizeof(int32_t));
  }
  return c.value();
}

int64_t write_prefix_file(const std::string& path, const PrefixIdentity& identity,
                          const std::vector<RadixCache::Entry>& entries, const KVPool& pool) {
  // A name of this process's own, created afresh: two servers given one directory never write into
  // each other's temporary file, and a FIFO or a link planted there is not opened (O_EXCL).
  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  ::unlink(tmp.c_str());  // left by a crashed process that had this pid
  Fd f;
  // 0600: the file holds every client's prompt tokens and their KV (the rename keeps the mode).
  f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (f.fd < 0) fail("--kv-cache-dir: cannot create {}: {}", tmp, std::strerror(errno));
  // A failed write (a full disk, say) leaves no partial file behind.
  struct Unlink {
    const std::string& p;
    bool armed = true;
    ~Unlink() {
      if (armed) ::unlink(p.c_str());
    }
  } unlink_tmp{tmp};
  Writer w(f.fd, tmp);
  const int64_t page_size = pool.page_size();
  const int64_t page_bytes = pool.config().bytes_per_page();
  w.put(kMagic, sizeof kMagic);
  const std::string id = identity_text(identity);
  w.put_value(uint64_t(id.size()));
  w.put(id.data(), id.size());
  w.put_value(int64_t(page_size));
  w.put_value(int64_t(page_bytes));
  w.put_value(int64_t(entries.size()));
  for (const auto& e : entries) {
    DP_CHECK(int64_t(e.key.size()) == page_size);
    w.put_value(e.parent);
    w.put(e.key.data(), e.key.size() * sizeof(int32_t));
  }
  // Pages in batches: one write per few MiB instead of one per page.
  const int64_t batch = std::max<int64_t>(1, (int64_t(4) << 20) / page_bytes);
  std::vector<unsigned char> buf(size_t(batch * page_bytes));
  for (size_t i = 0; i < entries.size();) {
    int64_t n = 0;
    for (; n < batch && i < entries.size(); ++n, ++i) pool.copy_page_out(entries[i].page, buf.data() + n * page_bytes);
    w.put(buf.data(), size_t(n * page_bytes));
  }
  const uint64_t sum = w.checksum();
  w.raw(&sum, sizeof sum);
  if (::fsync(f.fd) != 0) fail("--kv-cache-dir: cannot sync {}: {}", tmp, std::strerror(errno));
  ::close(f.fd);
  f.fd = -1;
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    fail("--kv-cache-dir: cannot rename {} to {}: {}", tmp, path, std::strerror(errno));
  unlink_tmp.armed = false;
  // The rename itself reaches the disk with the directory.
  sync_dir_of(path);
  return w.bytes() + int64_t(sizeof sum);
}

int64_t prefix_file_max_entries(const PrefixIdentity& identity, const KVPool& pool, int64_t max_bytes) {
  // As write_prefix_file lays it out: magic, identity length and text, page size, page bytes, count;
  // per entry its parent, its key and its page; the checksum.
  const int64_t fixed = int64_t(sizeof kMagic) + 8 + int64_t(identity_text(identity).size()) + 3 * 8 + 8;
  const int64_t per_entry = 8 + pool.page_size() * int64_t(sizeof(int32_t)) + pool.config().bytes_per_page();
  return std::max<int64_t>(0, (max_bytes - fixed) / per_entry);
}

std::string remove_prefix_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0) return errno == ENOENT ? "" : std::strerror(errno);
  sync_dir_of(path);
  return "";
}

std::string read_prefix_file(const std::string& path, const PrefixIdentity& identity, KVPool& pool,
                             std::vector<RadixCache::Entry>& out) {
  out.clear();
  Fd f;
  // O_NONBLOCK: a FIFO in its place would otherwise block the start for good (refused below).
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (f.fd < 0) return fmt::format("cannot open it: {}", std::strerror(errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) return fmt::format("cannot stat it: {}", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  const int64_t file_bytes = int64_t(st.st_size);
  Reader r(f.fd);
  char magic[sizeof kMagic];
  if (!r.get(magic, sizeof magic) || std::memcmp(magic, kMagic, sizeof kMagic) != 0)
    return "not a dpserve prefix cache file (or another version of one)";
  uint64_t id_len = 0;
  if (!r.get_value(id_len) || id_len > (1u << 20)) return "truncated or corrupt header";
  std::string id(id_len, '\0');
  if (!r.get(id.data(), id.size())) return "truncated header";
  if (id != identity_text(identity)) {
    const std::string diff = identity_diff(id, identity);
    return "made under another configuration: " + (diff.empty() ? std::string("the identity differs") : diff);
  }
  int64_t page_size = 0, page_bytes = 0, n = 0;
  if (!r.get_value(page_size) || !r.get_value(page_bytes) || !r.get_value(n)) return "truncated header";
  if (page_size != pool.page_size() || page_bytes != pool.config().bytes_per_page() || n < 0)
    return "corrupt header (page geometry)";
  // The size must be exact before any page is allocated: a truncated file is refused here.
  const int64_t entry_bytes = int64_t(sizeof(int64_t)) + page_size * int64_t(sizeof(int32_t));
  const int64_t head = int64_t(sizeof kMagic) + 8 + int64_t(id_len) + 3 * 8;
  // (Compared by division first: a corrupt count times the entry size overflows int64.)
  if (n > (file_bytes - head) / std::max<int64_t>(1, entry_bytes + page_bytes))
    return fmt::format("truncated or corrupt: {} bytes cannot hold the {} entries its header counts", file_bytes, n);
  if (file_bytes != head + n * (entry_bytes + page_bytes) + 8)
    return fmt::format("truncated or corrupt: {} bytes where {} entries need {}", file_bytes, n,
                       head + n * (entry_bytes + page_bytes) + 8);
  std::vector<RadixCache::Entry> entries(static_cast<size_t>(n));
  for (auto& e : entries) {
    e.key.resize(size_t(page_size));
    if (!r.get_value(e.parent) || !r.get(e.key.data(), e.key.size() * sizeof(int32_t))) return "truncated entries";
    if (e.parent < -1 || e.parent >= int64_t(&e - entries.data()))
      return "corrupt entries (a parent that is not an earlier entry)";
  }
  // Leading entries form a tree: keep what the free pages hold.
  const int64_t keep = std::min<int64_t>(n, pool.free_pages());
  std::vector<unsigned char> buf(static_cast<size_t>(page_bytes));
  std::vector<int32_t> pages;
  pages.reserve(size_t(keep));
  auto give_back = [&] {
    for (int32_t p : pages) pool.release(p);
  };
  for (int64_t i = 0; i < n; ++i) {
    if (!r.get(buf.data(), buf.size())) {
      give_back();
      return "truncated pages";
    }
    if (i < keep) {
      const int32_t p = pool.alloc();
      DP_CHECK(p >= 0);
      pool.copy_page_in(p, buf.data());
      pages.push_back(p);
    }
  }
  const uint64_t want = r.checksum();
  uint64_t sum = 0;
  if (!r.get_value(sum) || sum != want) {
    give_back();
    return "checksum mismatch (the file is corrupt)";
  }
  entries.resize(size_t(keep));
  for (int64_t i = 0; i < keep; ++i) entries[size_t(i)].page = pages[size_t(i)];
  out = std::move(entries);
  return "";
}

}  // namespace dpserve
