// A digest of every byte of a model's weight files, for the identity of --kv-cache-dir files: KV
// computed under other weights must never be served, and a fine-tune may change only small tensors
// (biases, norms, router gates) that model_identity's sampled digest does not read. Integrity, not
// security: a fast 64-bit hash, not a cryptographic one.
#pragma once

#include <cstdint>
#include <string>

namespace dpserve {

// Over the files model_weight_files(model_path) lists, in that order: each one's name, size and
// every byte. Files are hashed in 8 MiB chunks on `threads` threads (the chunks' hashes are folded
// in order, so the result does not depend on `threads`). Throws dpserve::Error if a file cannot be
// read. `bytes` (optional) receives the bytes read.
uint64_t weight_files_digest(const std::string& model_path, int threads, int64_t* bytes = nullptr);

// The word-at-a-time hash of one chunk (exposed for tests): changes with any byte and with `n`.
uint64_t chunk_hash(const void* data, size_t n, uint64_t seed);

}  // namespace dpserve
