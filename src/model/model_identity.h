// What makes two loads "the same model", for the nodes of a `--nnodes` job to compare before they
// serve (node_join.h check_nodes_agree): a node that joined with other weights would run collectives
// of other shapes, or quietly different numbers.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/config.h"

namespace dpserve {

// (what, value) pairs, equal on every node that loads the same model from `model_path` (a folder or
// one file): a digest of the parsed config (every field of ModelConfig), the bytes of the weight
// files (*.safetensors, *.gguf, *.bin; the file itself when model_path is a file), and a digest of
// each weight file's name, size, first and last 64 KiB and 4 KiB of every MiB between ("model
// weights digest": a fine-tune or merged adapter of the same shape differs in every tensor it
// changed that has 1 MiB or more; reading all of a large model's bytes on every start would not be
// cheap; --kv-cache-dir, which must never serve KV of other weights, adds weight_digest.h's digest
// of every byte). Names of digests end in "digest".
std::vector<std::pair<std::string, int64_t>> model_identity(const std::string& model_path, const ModelConfig& cfg);

// The weight files of `model_path`, sorted: its *.safetensors, *.gguf and *.bin files (a folder), or
// the file itself.
std::vector<std::string> model_weight_files(const std::string& model_path);

// 64-bit FNV-1a of `bytes` folded into `h` (start with kFnvOffset).
constexpr uint64_t kFnvOffset = 1469598103934665603ull;
uint64_t fnv1a(uint64_t h, const void* bytes, size_t n);

}  // namespace dpserve
