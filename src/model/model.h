// A decoder-only transformer (Llama, Mistral, Qwen2, Qwen3, Qwen3-MoE, Mixtral,
// DeepSeek-V2/V3, Gemma 2 / 3, Phi-3, gpt-oss) that runs one forward pass over a ragged batch of sequences
// against a paged KV cache. The attention kind (per-head GQA or MLA's latent)
// decides the cache layout.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kv/kv_pool.h"
#include "model/config.h"
#include "model/lora.h"
#include "model/mla_attention.h"
#include "model/moe.h"
#include "model/parallel.h"
#include "model/quant_recipe.h"
#include "model/rope.h"
#include "model/step_phases.h"
#include "model/vision_tower.h"
#include "vision/image_input.h"
#include "kernels/repack.h"
#include "model/weight_store.h"

namespace dpserve {

// One step's work: every sequence's new tokens laid end to end.
struct ForwardBatch {
  std::vector<int32_t> tokens;
  std::vector<AttnSeq> seqs;         // q_row, n_q, pos0, page table of each sequence
  std::vector<int64_t> logit_rows;   // rows of `tokens` whose logits are wanted, in output order
  // Rows whose hidden state after the final norm is wanted (pooling heads), in output order.
  std::vector<int64_t> hidden_rows;
  // Optional, one per row: an embedding [hidden] that replaces the token's (input_embeds requests).
  std::vector<const float*> row_embeds;
  // Optional, 3 per row: M-RoPE (temporal, height, width) positions of each row (models with
  // mrope_section only). Empty: every row rotates at its KV position, as 1-D RoPE does.
  std::vector<int32_t> mrope_pos;
  // Rows whose hidden state after the final norm is wanted (what a NEXTN layer takes from its
  // target, and from itself along a chain), written to last_hidden [last_hidden_rows.size(), hidden]
  // in order.
  std::vector<int64_t> last_hidden_rows;
  float* last_hidden = nullptr;
  // NEXTN models only (LoadOptions::nextn), one row [hidden] per token of the batch: the previous
  // model's hidden state that the row's token is paired with (see LoadOptions::nextn).
  const float* prev_hidden = nullptr;
  // Optional, one per sequence (parallel to seqs): the LoRA adapter the sequence runs with, a slot
  // returned by Model::add_lora, or -1 for the base model. Empty: every sequence runs the base model.
  std::vector<int32_t> seq_lora;

  // Appends a sequence; `pages` must cover pos0 + tokens.size() positions and stay alive.
  void add(const int32_t* toks, int64_t n, int64_t pos0, const int32_t* pages, bool all_logits);
  int64_t n_tokens() const { return int64_t(tokens.size()); }
};

struct LoadOptions {
  ModelParallel parallel;
  ModelComm* comm = nullptr;  // required when any shard size > 1
  int threads = 0;            // members of the model's thread team (0 = the machine's cores)
  Quantization quantization = Quantization::kNone;  // float matrices to block types on load
  bool verbose = true;  // say how long converting the weights took (one rank of many)
  // Vision-language models: the tower sharded over the attention group's ranks, or whole on each.
  VisionPlacement vision = VisionPlacement::kSharded;
  // Run on this team (a draft model beside its target: the two never run at once, and a second
  // team's threads would only compete for the same cores). Null: the model starts its own.
  ThreadTeam* team = nullptr;
  // Load the first multi-token-prediction layer of a DeepSeek-V3 or GLM-4.5 checkpoint
  // (model.layers.{num_hidden_layers}.*) as a model of its own, for NEXTN drafting: a row pairing
  // token t with hidden state h (the normed output of the row before it, ForwardBatch::prev_hidden)
  // enters as eh_proj([enorm(embed(t)); hnorm(h)]), runs the layer's attention and MoE / MLP, and
  // leaves through shared_head.norm and shared_head.head (the main model's head when it has none).
  bool nextn = false;
  // The longest sequence this model will run (--context-length; 0: the model's own). LongRoPE models
  // (Phi-3 / Phi-4) pick their long frequency factors iff it exceeds original_max_position_embeddings.
  int64_t context_length = 0;
};

class Model {
 public:
  // `path`: a Hugging Face model folder, or a llama2.c checkpoint file.
  static std::unique_ptr<Model> load(const std::string& path, const LoadOptions& opts = {});
  ~Model();

  const ModelConfig& config() const { return cfg_; }
  const ModelParallel& parallel() const { return par_; }
  int64_t local_kv_heads() const { return n_kv_local_; }
  // Bytes of every tensor of the model as run (quantized / repacked matrices at their new size).
  int64_t weight_bytes() const { return weight_bytes_; }
  // The thread team that runs every forward pass (its caller is member 0, the step thread).
  ThreadTeam& team() { return *team_; }
  int threads() const { return team_->size(); }
  // Elements of every tensor of the model (its parameter count).
  int64_t weight_params() const { return weight_params_; }
  // Bytes of the token embedding table as stored (a decode step reads a row of it, not all of it,
  // unless it is also the LM head).
  int64_t embedding_bytes() const { return embed_.bytes(); }
  // What one token's step reads of the weights, the roof of single-stream decode (benchmarks):
  // every matrix once, except a MoE layer's routed experts, of which a token reads k of n (counted
  // as that share of them), and the embedding table only where it is also the LM head (bytes: nor
  // the kv_b_proj an MLA layer of a quantized GGUF rebuilds for prefill). Bytes as run, and
  // elements (2 flops each a token). For a model on one rank.
  int64_t token_weight_bytes() const;
  int64_t token_weight_params() const;
  // Whether any tensor runs in a block-quantized type (a GGUF file, or --quantization).
  bool quantized() const { return quantized_; }

  // A KV pool sized for this rank's share of the model (per-head K/V, or MLA's latent rows), its
  // values stored as kv_elem().
  KVPoolConfig kv_config(int64_t n_pages, int64_t page_size) const;
  // How KV pools of this model store values (kv/kv_dtype.h resolves --kv-cache-dtype); fp32 until set.
  void set_kv_elem(KVElem e) { kv_elem_ = e; }
  KVElem kv_elem() const { return kv_elem_; }
  // MLA models: what the decompressed form's keys and values are held in over an fp32 latent
  // (kv/kv_dtype.h resolve_mla_expanded_elem); fp32 until set.
  void set_mla_expanded_elem(KVElem e) { mla_expanded_elem_ = e; }
  KVElem mla_expanded_elem() const { return mla_expanded_elem_; }
  // Vision-language models (Qwen2.5-VL): whether the model has a vision tower, and one image's
  // embeddings: patches [grid_h * grid_w, patch_row] (vision/image_input.h image_patches) to
  // out [image_tokens(grid_h, grid_w), hidden], run on the model's thread team. With a sharded tower
  // (LoadOptions::vision) and more than one rank in the attention group, collective over the group:
  // every rank of it calls it for the same image at the same point, and each gets all of `out`.
  bool takes_images() const { return vision_ != nullptr; }
  // The folder's preprocessor_config.json and the image token ids (config.json), for takes_images().
  const ImagePreprocessConfig& image_config() const { return image_cfg_; }
  const VisionTokenIds& vision_tokens() const { return vision_ids_; }
  int64_t image_tokens(int64_t grid_h, int64_t grid_w) const { return vision_->tokens(grid_h, grid_w); }
  void encode_image(const float* patches, int64_t grid_h, int64_t grid_w, float* out);

  // LoRA (PEFT) adapters: loads the adapter folder `dir` (adapter_config.json and
  // adapter_model.safetensors) as this rank's shard of it and returns its slot (0, 1, ... in load
  // order), which ForwardBatch::seq_lora names. Throws dpserve::Error naming whatever in the
  // adapter this model cannot run. Every rank loads the same adapters in the same order.
  int32_t add_lora(const std::string& dir);
  // At run time (/load_lora_adapter): loads `dir` into `slot`, a free slot or lora_count() (a new
  // one); throws as add_lora does, leaving the model unchanged. remove_lora frees a loaded slot
  // (its number may be loaded again later). Every rank does the same loads and removals.
  void load_lora(int32_t slot, const std::string& dir);
  void remove_lora(int32_t slot);
  // Slots 0 .. lora_count() - 1 exist; some may be free (removed).
  int32_t lora_count() const { return int32_t(loras_.size()); }
  bool lora_loaded(int32_t slot) const {
    return slot >= 0 && slot < lora_count() && !loras_[size_t(slot)].dir.empty();
  }
  std::vector<bool> lora_loaded_slots() const;
  // Bytes of every loaded adapter's tensors as held on this rank (f32, this rank's shard).
  int64_t lora_bytes() const;

  // MLA only: force the absorbed or the decompressed form for every sequence (tests compare them).
  void set_mla_path(MlaPath p) { mla_path_ = p; }

  // Runs the batch on the thread team, writes K/V of its tokens into `kv`, and fills
  // logits[batch.logit_rows.size(), vocab], and hidden[batch.hidden_rows.size(), hidden] (the rows
  // after the final norm, as Hugging Face's last_hidden_state; may be null without hidden_rows).
  // Collectives (ModelComm) are called from the calling thread only.
  void forward(const ForwardBatch& batch, KVPool& kv, float* logits, float* hidden = nullptr);

  // Benchmarks: times the phases of the steps the clock records (model/step_phases.h), or none
  // (null, the default). Set while no step runs; the clock must outlive its use.
  void set_phase_clock(StepPhaseClock* clock) { phase_clock_ = clock; }
  // The weight bytes this rank reads in phase p of a one-token step (every matrix of it once; of
  // a MoE layer's routed experts the k its token picks; an MLA layer's absorbed form), or -1 where
  // they are not counted (a NEXTN layer's rest).
  int64_t phase_weight_bytes(StepPhase p) const;

 private:
  struct Layer;
  Model() = default;
  void init_layers(const LoadOptions& opts);
  int64_t unpicked_experts(bool bytes) const;  // token_weight_*: the routed experts a token leaves
  // One member's part of forward(); every member runs it.
  void forward_member(Team& t, const ForwardBatch& b, KVPool& kv, float* logits, float* hidden);
  void attention(Team& t, const Layer& L, int64_t li, const ForwardBatch& b, KVPool& kv);
  void mlp(Team& t, const Layer& L, int64_t li, int64_t T);
  // xn = rmsnorm(x) with `norm`, or x itself without one (OLMo 2's layers have no input norms).
  void layer_input(Team& t, const std::vector<float>& norm, int64_t T);
  // OLMo 2's q_norm / k_norm over each token's whole projection, on q_ / k_ before RoPE.
  void qk_norm_whole(Team& t, const Layer& L, int64_t T);
  // x += out (T rows), or x += out * residual_multiplier (Granite).
  void add_residual(Team& t, const float* out, int64_t T);
  void divide_logits(Team& t, float* logits, int64_t n) const;
  // Phase p of a recorded step has ended (the leader reads the clock; a no-op otherwise).
  void phase_end(Team& t, StepPhase p) {
    if (phase_on_ && t.leader()) phase_clock_->mark(p);
  }
  // LoRA: the rows of a step that run one adapter, and one projection's output to add to.
  struct LoraRows {
    int32_t slot = 0;
    std::vector<int32_t> rows;
  };
  struct LoraOut {
    int mod;  // LoraModule
    float* y;
    int64_t ldy;
  };
  // Collective: y[row] += B (A x[row]) for every row of `groups` whose adapter targets the module
  // of each of outs[0..n) in layer li (rows index both x and y).
  void lora_apply(Team& t, int64_t li, const std::vector<LoraRows>& groups, const float* x, int64_t ldx,
                  const LoraOut* outs, int n);
  // This step's MLP rows whose adapter targets gate or up in layer li, by adapter.
  std::vector<LoraRows> lora_gate_up_rows(int64_t li) const;
  // The gate / up halves of the MLP, unfused, for the rows of `groups` (into h_).
  void lora_gate_up(Team& t, int64_t li, const float* in, const Layer& L, const std::vector<LoraRows>& groups);
  // Sorts this step's rows by adapter (attention rows; the MLP's, gathered over DP groups).
  void lora_prepare(const ForwardBatch& b);
  // MLA layers (DeepSeek-V2/V3): model/mla_attention.h, run by the team's leader for now.
  void mla_attention(Team& t, const Layer& L, int64_t li, const ForwardBatch& b, KVPool& kv);
  // What the decompressed form's keys and values are held in over `kv`'s latent.
  KVElem mla_expanded(const KVPool& kv) const;

  ModelConfig cfg_;
  ModelParallel par_;
  ModelComm* comm_ = nullptr;
  WeightStore store_;
  std::unique_ptr<RopeTable> rope_;
  std::unique_ptr<RopeTable> rope_local_;  // sliding layers' RoPE when it differs (Gemma 3)
  std::vector<Layer> layers_;
  std::unique_ptr<VisionTower> vision_;
  VisionPlacement vision_placement_ = VisionPlacement::kSharded;
  ImagePreprocessConfig image_cfg_;
  VisionTokenIds vision_ids_;
  AlignedBytes converted_;  // matrices quantized / repacked on load, one region (model/weight_prep.h)
  WeightView embed_, lm_head_;
  std::vector<float> final_norm_;
  int64_t n_heads_local_ = 0, n_kv_local_ = 0, kv_head0_ = 0, ffn_local_ = 0, vocab0_ = 0, vocab_local_ = 0;
  int64_t weight_bytes_ = 0, weight_params_ = 0;
  bool quantized_ = false;
  MlaPath mla_path_ = MlaPath::kAuto;
  StepPhaseClock* phase_clock_ = nullptr;
  bool phase_on_ = false;  // this step is recorded
  // NEXTN (LoadOptions::nextn): the checkpoint index of layers_[0], and the input projection.
  bool nextn_ = false;
  int64_t layer_base_ = 0;
  std::vector<float> enorm_, hnorm_, cat_;
  WeightView eh_proj_;
  KVElem kv_elem_ = KVElem::kF32;
  KVElem mla_expanded_elem_ = KVElem::kF32;
  // LoRA adapters (slot = index), what of this model they may target, and this step's row groups.
  std::vector<LoraAdapter> loras_;
  LoraModelShape lora_shape_;
  bool lora_mlp_ = false;  // some adapter targets gate / up / down
  std::vector<LoraRows> lora_attn_rows_, lora_mlp_rows_;
  std::vector<float> lora_tmp_, lora_g_, lora_u_, lora_ids_, lora_ids_global_;

  std::unique_ptr<ThreadTeam> own_team_;
  ThreadTeam* team_ = nullptr;  // own_team_, or LoadOptions::team

  // Scratch, grown as needed (on the step thread, or by the leader between barriers) and reused
  // step after step.
  std::vector<float> x_, xn_, q_, k_, v_, attn_, o_, h_, logits_local_, sel_, global_in_, global_out_;
  std::vector<float> qk_sumsq_;  // OLMo 2: per row, the sums of squares of q and k
  MoeScratch moe_scratch_;  // shared by the MoE layers
  MlaScratch mla_scratch_;  // shared by the MLA layers
  std::vector<int64_t> row_pos_;     // position of each token of the batch
  std::vector<int32_t> page_of_row_;  // KV page of each token's position
  std::vector<uint8_t> skip_;     // DP padding rows of the gathered MLP input
  int64_t mlp_rows_ = 0;          // rows of the MLP input this step (all groups' with DP attention)
  std::vector<float> rope_cs_;  // MLA: per token of the batch, rope dim/2 cos then sin
  std::vector<float> mrope_cs_;  // M-RoPE rows: per token of the batch, head_dim/2 cos then sin
};

}  // namespace dpserve
