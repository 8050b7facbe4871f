// What travels between ranks each step, serialized once with msgpack: rank 0's control message
// (new requests with their DP group, cancellations, shutdown) and each group leader's report back
// (sampled tokens, finishes, loads).
//
// Wire format: every struct is a msgpack map from field name to value, and each message carries
// its format version under "v". Decoding is strict, because every rank of a group must act on the
// same bytes: a different version, an unknown or repeated field, a missing required field or a
// value of the wrong type or range is a dpserve::Error naming the field. Optional fields (marked
// below) are left out when they hold their default, so new per-request inputs (a constraint spec,
// image payloads) are new optional fields and cost nothing for requests that do not use them;
// changing what an existing field means bumps the version.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/finish.h"
#include "engine/request.h"

namespace dpserve {

inline constexpr uint32_t kControlMessageVersion = 1;

// Fields: id, group, input_ids, params, and optional input_embeds + embed_rows, top_logprobs,
// return_logprob, prompt_logprobs, constraint (the compiled automaton, constrain/automaton.h's
// serialization), logit_bias, images (each a map: height, width, rgb as one bin, hash; rgb must
// hold height x width x 3 bytes, or nothing when images_follow), images_follow, pooling (0..3),
// score_ids, token_ids_logprob (ids >= 0), allowed_token_ids (an int32 bin, ids >= 0), bad_words
// (one int32 bin of (length >= 1, ids >= 0) runs that fill it exactly; never empty), lora (the LoRA
// adapter slot, 0 .. the ranks' adapters - 1). Request::rid stays on rank 0 (logs, /abort_request).
struct NewRequest {
  uint64_t id = 0;
  int32_t group = 0;
  Request req;
  // The images carry their sizes and hashes but no RGB bytes: those follow in image_chunks over the
  // next steps, to the request's group only (engine/image_transfer.h).
  bool images_follow = false;
};

// A piece of one image's RGB bytes, sent this step from rank 0 to the ranks of `group`.
struct ImageChunk {
  uint64_t id = 0;      // request
  int32_t group = 0;
  uint32_t image = 0;   // index in the request's images
  uint64_t offset = 0;  // into the image's RGB bytes
  uint64_t size = 0;
};

// Fields: v, step, new, cancels, shutdown, and optional flush_cache, image_chunks (32-byte records
// in one bin), lora_load_slot + lora_load_path (both or neither), lora_unload_slot.
//
// LoRA adapters loaded and unloaded at run time (/load_lora_adapter): every rank applies the change
// before this step's requests. A load names a free slot (or the next new one) and the folder; an
// unload a loaded slot. At most one of them per step.
struct StepControl {
  uint64_t step = 0;
  std::vector<NewRequest> new_requests;
  std::vector<uint64_t> cancels;
  bool shutdown = false;
  bool flush_cache = false;  // drop every rank's prefix cache before this step's requests
  std::vector<ImageChunk> image_chunks;
  int32_t lora_load_slot = -1;  // -1: no load
  std::string lora_load_path;
  int32_t lora_unload_slot = -1;  // -1: no unload
};

// Fields: id, prompt_tokens, cached_tokens, and optional token + logprob (has_token), top_ids +
// top_logprobs, prompt (the prompt positions' entries, one bin), finish, error, spec_drafted,
// spec_accepted, spec_predicted, embedding, scores (float32 bins), id_logprobs (Request::token_ids_logprob's).
struct OutToken {
  uint64_t id = 0;
  bool has_token = false;  // false for a finish without a new token (abort, error)
  TokenOut tok;
  std::vector<TokenOut> prompt;  // prompt_logprobs: this step's prompt positions (Response::prompt)
  Finish finish = Finish::kNone;
  std::string error;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
  // Speculative decoding, on a request's first token of a step that verified drafts: the drafted
  // tokens checked and how many matched and became output (its tokens this step: spec_accepted + 1;
  // drafts taken past the request's end, EOS say, are not counted).
  int64_t spec_drafted = 0;
  int64_t spec_accepted = 0;
  bool spec_predicted = false;   // those drafts were the predicted output's (ScheduledSeq::drafts_given)
  std::vector<float> embedding;  // Request::pooling: the pooled hidden state (Response::embedding)
  std::vector<float> scores;     // Request::score_ids: their logits (Response::scores)
};

// Fields: v, group, running, waiting, pages_used, pages_total, prefix_hit_tokens,
// prefix_query_tokens, step_tokens, preemptions, cached_pages, outs; optional waiting_tokens.
struct GroupReport {
  int32_t group = 0;
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t pages_used = 0;
  int64_t pages_total = 0;
  int64_t prefix_hit_tokens = 0;
  int64_t prefix_query_tokens = 0;
  int64_t step_tokens = 0;
  std::vector<OutToken> outs;
  int64_t preemptions = 0;   // cumulative, this group's scheduler
  int64_t cached_pages = 0;  // pages in the prefix tree (reclaimable once no request uses them)
  int64_t waiting_tokens = 0;  // tokens of the waiting requests (optional on the wire: 0 when absent)
};

std::vector<std::byte> encode(const StepControl& c);
// `lora_loaded`: which adapter slots this rank holds (Model::lora_loaded_slots()); a request naming
// another slot, a load into a held slot (or past the next new one) and an unload of a slot not held
// are refused like any other bad field. The count form: slots 0 .. lora_count - 1 are held.
StepControl decode_control(const std::byte* data, size_t n, const std::vector<bool>& lora_loaded);
StepControl decode_control(const std::byte* data, size_t n, int32_t lora_count = 0);
std::vector<std::byte> encode(const GroupReport& r);
GroupReport decode_report(const std::byte* data, size_t n);

}  // namespace dpserve
