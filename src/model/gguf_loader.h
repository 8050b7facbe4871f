// GGUF models (llama.cpp's format) for the model runtime: the config from the metadata, and the
// tensors under the Hugging Face names the layers load (token_embd -> model.embed_tokens,
// blk.N.attn_q -> model.layers.N.self_attn.q_proj, ...), each a view into the mapping. Stacked
// experts (blk.N.ffn_gate_exps, [experts, rows, cols]) become one view per expert (older llama /
// Mixtral files' per-expert blk.N.ffn_gate.E load as they are); deepseek2's
// split attn_k_b / attn_v_b are rebuilt into one kv_b_proj (the only tensors copied).
#pragma once

#include <string>

#include "model/config.h"
#include "model/weight_store.h"

namespace dpserve {

// `path`: a .gguf file, any file of a split set, or a folder holding one GGUF model (see
// find_gguf_model). Throws dpserve::Error naming the file, key or tensor at fault.
void load_gguf(const std::string& path, ModelConfig& config, WeightStore& store);

}  // namespace dpserve
