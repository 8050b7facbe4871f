// /v1/embeddings, /v1/rerank and /v1/score bodies -> validated specs, and the vectors and scores they answer
// with. Every problem is an ApiError (400/404) naming the field, before anything reaches the engine.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/pooling_config.h"
#include "server/request_parse.h"

namespace dpserve {

// OpenAI's embeddings request: input (a string, strings, token ids, lists of token ids), model,
// encoding_format (float | base64), dimensions, user.
struct EmbeddingsSpec {
  std::vector<std::vector<int32_t>> inputs;
  bool base64 = false;
  int64_t dimensions = 0;  // 0: the model's hidden size
};
inline constexpr int64_t kMaxEmbeddingInputs = 2048;  // OpenAI's bound on inputs per request
bool is_embeddings_field(std::string_view name);
// "input": its token-id arrays are parsed straight into int32 (JsonLimits::id_field).
bool is_embeddings_id_field(std::string_view name);
EmbeddingsSpec parse_embeddings_request(const nlohmann::json& body, const ParseContext& ctx,
                                        const EmbeddingConfig& cfg, int64_t hidden);
// The pooled vector as the response carries it, as JSON text: truncated to `dimensions` (0: whole),
// then L2-normalised when cfg.normalize; an array of floats (each float32's shortest round-tripping
// form), or a string of base64 of its little-endian float32s.
std::string embedding_value(std::vector<float> v, const EmbeddingConfig& cfg, int64_t dimensions, bool base64);

// The rerank request (SGLang / Jina / Cohere): query, documents (strings), top_n, return_documents,
// instruct (SGLang's name for the Qwen3-Reranker instruction), model, user.
struct RerankSpec {
  std::string query;
  std::vector<std::string> documents;
  std::vector<std::vector<int32_t>> prompts;  // one per document, in the reranker's prompt format
  int64_t top_n = 0;                           // results to return (all when the body has none)
  bool return_documents = true;
  int32_t yes_id = -1, no_id = -1;
};
inline constexpr int64_t kMaxRerankDocuments = 1024;
inline constexpr const char* kDefaultRerankInstruct =
    "Given a web search query, retrieve relevant passages that answer the query";
bool is_rerank_field(std::string_view name);
RerankSpec parse_rerank_request(const nlohmann::json& body, const ParseContext& ctx);
// Qwen3-Reranker's documented prompt for one (instruct, query, document): the system turn, the user
// turn, and the assistant turn opened with an empty think block.
std::string rerank_prompt(const std::string& instruct, const std::string& query, const std::string& doc);
// P("yes") / (P("yes") + P("no")) from the two logits at the last prompt position.
double rerank_score(double yes_logit, double no_logit);

// SGLang's scoring request (/v1/score): query + each item (text joined before tokenizing, or ids
// concatenated; item_first puts the item first), and the next-token probabilities of label_token_ids
// at the end of each: over the whole vocabulary, or (apply_softmax) over the labels alone.
struct ScoreSpec {
  std::vector<std::vector<int32_t>> prompts;  // one per item
  std::vector<int32_t> label_ids;
  bool apply_softmax = false;
};
inline constexpr int64_t kMaxScoreLabels = 1024;
bool is_score_field(std::string_view name);
ScoreSpec parse_score_request(const nlohmann::json& body, const ParseContext& ctx);
// One item's scores from the label logits and the row's log-sum-exp (Request::score_ids' report).
std::vector<double> label_scores(const std::vector<float>& logits_then_lse, bool apply_softmax);

// vLLM's scoring request on the same route (told apart by text_1 / text_2): text_1 against text_2,
// one against many (text_1 one string) or pair by pair (lists of one length). An embedding server
// (--is-embedding) answers each pair with the cosine of the two pooled vectors, as vLLM does for
// embedding models; a generation server with the Qwen3-Reranker score of query text_1 and document
// text_2 (what /v1/rerank computes; vLLM's converted Qwen3-Reranker gives the same sigmoid(yes - no)).
struct PairScoreSpec {
  std::vector<std::vector<int32_t>> prompts;  // cosine: text_1's inputs, then text_2's; else one per pair
  size_t n1 = 0, n2 = 0;                      // the strings in text_1 and in text_2
  bool cosine = false;
  int32_t yes_id = -1, no_id = -1;
  // The pair index of text_1 for pair j (0 when text_1 is one string).
  size_t first_of(size_t j) const { return n1 == 1 ? 0 : j; }
};
bool is_pair_score_request(const nlohmann::json& body);
PairScoreSpec parse_pair_score_request(const nlohmann::json& body, const ParseContext& ctx, bool embedding_server);
// cos(a, b) in double; 0 when either vector is zero.
double cosine_similarity(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace dpserve
