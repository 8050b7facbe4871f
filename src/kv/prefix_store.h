// The on-disk prefix cache (--kv-cache-dir): one rank's radix tree and the KV bytes of its pages in
// one file, written atomically (temp file + rename) and read back at start, so a restarted server
// serves cached prefixes without recomputing them. The file starts with an identity (model digests,
// layout, page size, KV dtype, this rank's place): a file made under another identity, or one that
// is truncated or corrupt (a checksum covers every byte), is refused with the reason, never loaded.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kv/kv_pool.h"
#include "kv/radix_cache.h"

namespace dpserve {

// (name, value) lines that must be equal for a file to be loaded; names are shown in the reasons.
using PrefixIdentity = std::vector<std::pair<std::string, std::string>>;

// Writes `entries` (RadixCache::export_nodes order) and their pages' bytes from `pool` to `path`
// through `path`.tmp and a rename: a crash leaves the old file or the new one, never a mix. Returns
// the bytes written; throws dpserve::Error (naming the path) when the file cannot be written.
int64_t write_prefix_file(const std::string& path, const PrefixIdentity& identity,
                          const std::vector<RadixCache::Entry>& entries, const KVPool& pool);

// The most entries a file of at most `max_bytes` can hold: each costs its page's bytes and its key
// and parent, and the file its header (identity included) and checksum, so --kv-cache-dir-max-gb
// bounds the whole file, not only its pages (it came out ~1 % over for a small model's pages).
int64_t prefix_file_max_entries(const PrefixIdentity& identity, const KVPool& pool, int64_t max_bytes);

// Removes `path` and syncs its directory (POST /flush_cache: flushed prefixes must not come back
// from the disk after a crash). Returns "" (also when there was no file) or why it was not removed.
std::string remove_prefix_file(const std::string& path);

// Reads `path` into free pages of `pool`: on success returns "" and `out` holds the entries with
// the pages they were read into (each with one reference, the caller's), as many leading entries as
// the pool's free pages hold. Otherwise returns why the file was refused (identity differences
// named, or what is wrong with the file) and allocates nothing. Never throws for a bad file.
std::string read_prefix_file(const std::string& path, const PrefixIdentity& identity, KVPool& pool,
                             std::vector<RadixCache::Entry>& out);

// A digest of the tree's shape and tokens (not its pages' ids): the ranks of a DP group compare
// theirs before adopting what they read, since their trees must stay identical.
uint64_t prefix_tree_digest(const std::vector<RadixCache::Entry>& entries);

}  // namespace dpserve
