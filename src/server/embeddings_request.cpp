#include "server/embeddings_request.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <iterator>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/check.h"
#include "server/base64.h"
#include "server/json_body.h"
#include "server/openai_error.h"
#include "tokenizer/tokenizer.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

constexpr const char* kEmbeddingsFields[] = {"model",      "input", "encoding_format",
                                             "dimensions", "user",  "truncate_prompt_tokens"};
constexpr const char* kScoreFields[] = {"model", "query", "items", "label_token_ids", "apply_softmax", "item_first"};
constexpr const char* kPairScoreFields[] = {"model", "text_1", "text_2", "truncate_prompt_tokens", "user"};
constexpr const char* kRerankFields[] = {"model", "query", "documents", "top_n", "return_documents", "instruct", "user"};

template <size_t N>
bool in(const char* const (&names)[N], std::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

template <size_t N>
void refuse_unknown(const json& body, const char* const (&names)[N]) {
  if (!body.is_object()) bad_param("", "The request body must be a JSON object");
  for (const auto& [k, v] : body.items())
    if (!in(names, k)) bad_param(k, fmt::format("Unrecognized request argument supplied: '{}'", k));
}

void check_model(const json& body, const ParseContext& ctx) {
  auto it = body.find("model");
  if (it == body.end()) return;
  if (!it->is_string()) bad_param("model", "'model' must be a string");
  if (it->get<std::string>() != ctx.served_model_name)
    throw ApiError(404, fmt::format("The model '{}' does not exist; this server serves '{}'", it->get<std::string>(),
                                    ctx.served_model_name),
                   "model", "invalid_request_error", "model_not_found");
}

// null is the default (no user), as for every optional field.
void check_user(const json& body) {
  if (auto it = body.find("user"); it != body.end() && !it->is_null() && !it->is_string())
    bad_param("user", "'user' must be a string");
}

// An input's ids fit the vocabulary and, with the one position the engine runs past the prompt, the context.
template <typename Id>
void check_ids(const std::vector<Id>& ids, size_t index, const ParseContext& ctx, const std::string& param) {
  if (ids.empty()) bad_param(param, fmt::format("'{}' item {} has no tokens", param, index));
  for (int64_t id : ids)
    if (auto why = ctx.limits.token_rule(id))
      bad_param(param, fmt::format("token id {} in '{}' item {} {}", id, param, index, *why));
  if (int64_t(ids.size()) >= ctx.limits.context_length)
    bad_param(param, fmt::format("'{}' item {} has {} tokens; this model's maximum context length is {} tokens (at most "
                                 "{} per input)",
                                 param, index, ids.size(), ctx.limits.context_length, ctx.limits.context_length - 1));
}

// vLLM's truncate_prompt_tokens: an input keeps its last `keep` tokens (0: all of them).
template <typename Id>
void keep_last(std::vector<Id>& ids, int64_t keep) {
  if (keep > 0 && int64_t(ids.size()) > keep) ids.erase(ids.begin(), ids.end() - keep);
}

std::vector<int32_t> checked(std::vector<int64_t> ids, size_t index, const ParseContext& ctx, const std::string& param,
                             int64_t keep = 0) {
  keep_last(ids, keep);
  check_ids(ids, index, ctx, param);
  return std::vector<int32_t>(ids.begin(), ids.end());
}

std::vector<int64_t> widen(const std::vector<int32_t>& ids) { return std::vector<int64_t>(ids.begin(), ids.end()); }

// `flat`: `a` is the whole input (one list of ids), so a string or list in it mixes kinds of input.
std::vector<int64_t> id_list(const json& a, size_t index, bool flat) {
  std::vector<int64_t> ids;
  for (size_t k = 0; k < a.size(); ++k) {
    const json& x = a[k];
    if (flat && (x.is_string() || is_id_array(x)))
      bad_param("input", fmt::format("'input' mixes token ids and {} (item {}): send one kind",
                                     x.is_string() ? "strings" : "lists", k));
    if (flat && !x.is_number_integer())
      bad_param("input", fmt::format("'input' item {} is not a token id: a list of token ids holds integers only", k));
    if (!x.is_number_integer())
      bad_param("input", fmt::format("'input' item {}: a list of token ids holds integers only", index));
    ids.push_back(x.is_number_unsigned() && x.get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX : x.get<int64_t>());
  }
  return ids;
}

// An input of ids: packed by the parser (json_body.h) or a DOM array (see id_list).
std::vector<int32_t> checked_ids(const json& a, size_t index, bool flat, const ParseContext& ctx,
                                 const std::string& param, int64_t keep) {
  if (!is_packed_ids(a)) return checked(id_list(a, index, flat), index, ctx, param, keep);
  std::vector<int32_t> ids = packed_ids(a);
  keep_last(ids, keep);
  check_ids(ids, index, ctx, param);
  return ids;
}

std::vector<int32_t> encode_text(const json& s, size_t index, const ParseContext& ctx, const std::string& param,
                                 int64_t keep) {
  const std::string text = s.get<std::string>();
  if (text.empty()) bad_param(param, fmt::format("'{}' item {} is an empty string", param, index));
  if (ctx.skip_tokenizer) refuse_text_without_tokenizer(param, "send token ids instead");
  // As sentence-transformers does: the tokenizer's special tokens (e.g. Qwen3-Embedding's closing EOS).
  return checked(widen(ctx.tok->encode(text, true)), index, ctx, param, keep);
}

// vLLM's truncate_prompt_tokens: -1 keeps what the context holds (one position is the engine's, past
// the input), k >= 1 the last k tokens; 0 when absent.
int64_t truncation(const json& body, const ParseContext& ctx) {
  const char* name = "truncate_prompt_tokens";
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return 0;
  if (!it->is_number_integer()) bad_param(name, fmt::format("'{}' must be an integer", name));
  const int64_t k = it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX : it->get<int64_t>();
  const int64_t keep = truncate_prompt_tokens_value(k, ctx.limits, name);
  return k == -1 ? keep - 1 : keep;
}

// A reranker's answer token: one token of the served vocabulary (Qwen3's "yes" and "no" are).
int32_t reranker_answer_id(const ParseContext& ctx, const char* word, const char* route) {
  const std::vector<int32_t> ids = ctx.tok->encode(word, false);
  if (ids.size() != 1 || ctx.limits.token_rule(ids[0]))
    throw ApiError(400, fmt::format("{} needs a Qwen3-Reranker-style model whose tokenizer has '{}' as one token; this "
                                    "one encodes it as {} tokens",
                                    route, word, ids.size()),
                   "model", "invalid_request_error", "model_not_reranker");
  return ids[0];
}

}  // namespace

bool is_embeddings_field(std::string_view name) { return in(kEmbeddingsFields, name); }
bool is_embeddings_id_field(std::string_view name) { return name == "input"; }
bool is_rerank_field(std::string_view name) { return in(kRerankFields, name); }
bool is_score_field(std::string_view name) { return in(kScoreFields, name) || in(kPairScoreFields, name); }

EmbeddingsSpec parse_embeddings_request(const json& body, const ParseContext& ctx, const EmbeddingConfig& cfg,
                                        int64_t hidden) {
  refuse_unknown(body, kEmbeddingsFields);
  check_model(body, ctx);
  check_user(body);
  EmbeddingsSpec spec;
  if (auto it = body.find("encoding_format"); it != body.end() && !it->is_null()) {
    if (!it->is_string() || (*it != "float" && *it != "base64"))
      bad_param("encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
    spec.base64 = *it == "base64";
  }
  if (auto it = body.find("dimensions"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer()) bad_param("dimensions", "'dimensions' must be an integer");
    const int64_t d = it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX : it->get<int64_t>();
    if (!cfg.matryoshka)
      bad_param("dimensions", "'dimensions' is not supported by this model: its config.json declares no Matryoshka "
                              "training (is_matryoshka / matryoshka_dimensions), so a truncated vector would not be a "
                              "meaningful embedding");
    if (d < 1 || d > hidden) bad_param("dimensions", fmt::format("'dimensions' must be in [1, {}], got {}", hidden, d));
    if (!cfg.matryoshka_dims.empty() &&
        std::find(cfg.matryoshka_dims.begin(), cfg.matryoshka_dims.end(), d) == cfg.matryoshka_dims.end())
      bad_param("dimensions", fmt::format("'dimensions' must be one of the model's matryoshka_dimensions [{}], got {}",
                                          fmt::join(cfg.matryoshka_dims, ", "), d));
    spec.dimensions = d;
  }
  const int64_t keep = truncation(body, ctx);
  auto it = body.find("input");
  if (it == body.end()) bad_param("input", "'input' is required");
  const json& in = *it;
  if (in.is_string()) {
    spec.inputs.push_back(encode_text(in, 0, ctx, "input", keep));
  } else if (is_packed_ids(in)) {  // one list of token ids, as below
    spec.inputs.push_back(checked_ids(in, 0, true, ctx, "input", keep));
  } else if (in.is_array()) {
    if (in.empty()) bad_param("input", "'input' is an empty list");
    if (in[0].is_number()) {  // one list of token ids: one input, bounded by the context, not by the input count
      spec.inputs.push_back(checked_ids(in, 0, true, ctx, "input", keep));
    } else {
      if (int64_t(in.size()) > kMaxEmbeddingInputs)
        bad_param("input", fmt::format("'input' holds {} inputs; at most {} per request", in.size(), kMaxEmbeddingInputs));
      // All strings or all id lists (OpenAI's schema has no mixed form), as the first item is.
      const bool strings = in[0].is_string();
      for (size_t i = 0; i < in.size(); ++i) {
        if (!in[i].is_string() && !is_id_array(in[i]))
          bad_param("input", fmt::format("'input' item {} must be a string or a list of token ids", i));
        if (in[i].is_string() != strings)
          bad_param("input", fmt::format("'input' mixes strings and token id lists (item {}): send one kind", i));
        spec.inputs.push_back(strings ? encode_text(in[i], i, ctx, "input", keep)
                                      : checked_ids(in[i], i, false, ctx, "input", keep));
      }
    }
  } else {
    bad_param("input", "'input' must be a string, a list of strings, a list of token ids or a list of such lists");
  }
  return spec;
}

std::string embedding_value(std::vector<float> v, const EmbeddingConfig& cfg, int64_t dimensions, bool base64) {
  if (dimensions > 0 && dimensions < int64_t(v.size())) v.resize(size_t(dimensions));
  if (cfg.normalize) {
    double ss = 0;
    for (float x : v) ss += double(x) * x;
    // sentence-transformers' Normalize: x / max(||x||, 1e-12).
    const double inv = 1.0 / std::max(std::sqrt(ss), 1e-12);
    for (float& x : v) x = float(x * inv);
  }
  static_assert(sizeof(float) == 4);
  if (base64)
    return '"' + base64_encode(std::string_view(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float))) +
           '"';
  std::string out;
  out.reserve(v.size() * 12 + 2);
  out += '[';
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out += ',';
    // fmt's shortest form of the float itself: the digits that read back as this float32 (as base64's
    // bytes do), about half the text of the double it widens to. JSON has no NaN/inf: null, as nlohmann writes.
    if (std::isfinite(v[i]))
      fmt::format_to(std::back_inserter(out), "{}", v[i]);
    else
      out += "null";
  }
  out += ']';
  return out;
}

RerankSpec parse_rerank_request(const json& body, const ParseContext& ctx) {
  refuse_unknown(body, kRerankFields);
  check_model(body, ctx);
  check_user(body);
  if (ctx.skip_tokenizer) refuse_text_without_tokenizer("query", "/v1/rerank builds its prompts from text");
  RerankSpec spec;
  auto q = body.find("query");
  if (q == body.end()) bad_param("query", "'query' is required");
  if (!q->is_string() || q->get<std::string>().empty()) bad_param("query", "'query' must be a non-empty string");
  spec.query = q->get<std::string>();
  auto d = body.find("documents");
  if (d == body.end()) bad_param("documents", "'documents' is required");
  if (!d->is_array() || d->empty()) bad_param("documents", "'documents' must be a non-empty list of strings");
  if (int64_t(d->size()) > kMaxRerankDocuments)
    bad_param("documents", fmt::format("'documents' holds {} items; at most {} per request", d->size(), kMaxRerankDocuments));
  for (size_t i = 0; i < d->size(); ++i) {
    if (!(*d)[i].is_string()) bad_param("documents", fmt::format("'documents' item {} must be a string", i));
    spec.documents.push_back((*d)[i].get<std::string>());
  }
  std::string instruct = kDefaultRerankInstruct;
  if (auto it = body.find("instruct"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) bad_param("instruct", "'instruct' must be a string");
    instruct = it->get<std::string>();
  }
  spec.top_n = int64_t(spec.documents.size());
  if (auto it = body.find("top_n"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer()) bad_param("top_n", "'top_n' must be a positive integer");
    const int64_t n = it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX : it->get<int64_t>();
    if (n < 1) bad_param("top_n", fmt::format("'top_n' must be a positive integer, got {}", n));
    spec.top_n = std::min(spec.top_n, n);  // more than the documents: all of them, as Cohere and SGLang do
  }
  if (auto it = body.find("return_documents"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) bad_param("return_documents", "'return_documents' must be a boolean");
    spec.return_documents = it->get<bool>();
  }
  spec.yes_id = reranker_answer_id(ctx, "yes", "/v1/rerank");
  spec.no_id = reranker_answer_id(ctx, "no", "/v1/rerank");
  // Every prompt holds the query: when it leaves no room for any document, the query is what to shorten.
  const size_t bare = ctx.tok->encode(rerank_prompt(instruct, spec.query, ""), false).size();
  if (int64_t(bare) >= ctx.limits.context_length)
    bad_param("query", fmt::format("'query' makes each rerank prompt {} tokens (with 'instruct' and the reranker's "
                                   "template) before any document; this model's maximum context length is {} tokens",
                                   bare, ctx.limits.context_length));
  for (size_t i = 0; i < spec.documents.size(); ++i) {
    std::vector<int32_t> ids = ctx.tok->encode(rerank_prompt(instruct, spec.query, spec.documents[i]), false);
    spec.prompts.push_back(checked(widen(ids), i, ctx, "documents"));
  }
  return spec;
}

ScoreSpec parse_score_request(const json& body, const ParseContext& ctx) {
  refuse_unknown(body, kScoreFields);
  check_model(body, ctx);
  ScoreSpec spec;
  auto flag = [&](const char* name) {
    auto it = body.find(name);
    if (it == body.end() || it->is_null()) return false;
    if (!it->is_boolean()) bad_param(name, fmt::format("'{}' must be a boolean", name));
    return it->get<bool>();
  };
  spec.apply_softmax = flag("apply_softmax");
  const bool item_first = flag("item_first");
  auto l = body.find("label_token_ids");
  if (l == body.end() || !l->is_array() || l->empty())
    bad_param("label_token_ids", "'label_token_ids' must be a non-empty list of token ids");
  if (int64_t(l->size()) > kMaxScoreLabels)
    bad_param("label_token_ids", fmt::format("'label_token_ids' holds {} ids; at most {}", l->size(), kMaxScoreLabels));
  // A list of token ids, each an integer (range checked by `checked`).
  auto ids_of = [](const json& a, const std::string& param) {
    std::vector<int64_t> ids;
    for (const json& x : a) {
      if (!x.is_number_integer()) bad_param(param, fmt::format("'{}' must hold token ids (integers)", param));
      ids.push_back(x.is_number_unsigned() && x.get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX : x.get<int64_t>());
    }
    return ids;
  };
  spec.label_ids = checked(ids_of(*l, "label_token_ids"), 0, ctx, "label_token_ids");
  auto q = body.find("query");
  if (q == body.end() || q->is_null()) bad_param("query", "'query' is required");
  auto it = body.find("items");
  if (it == body.end() || it->is_null()) bad_param("items", "'items' is required");
  // Text: query and item joined, then tokenized as one prompt (with the tokenizer's special tokens),
  // as SGLang does; ids: the two lists concatenated.
  std::vector<json> items = it->is_array() ? std::vector<json>(it->begin(), it->end()) : std::vector<json>{*it};
  if (items.empty()) bad_param("items", "'items' must not be empty");
  if (int64_t(items.size()) > kMaxRerankDocuments)
    bad_param("items", fmt::format("'items' holds {} items; at most {} per request", items.size(), kMaxRerankDocuments));
  if (q->is_string()) {
    if (ctx.skip_tokenizer) refuse_text_without_tokenizer("query", "send 'query' and 'items' as token ids");
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string()) bad_param("items", "a text 'query' goes with text 'items'");
      const std::string a = q->get<std::string>(), b = items[i].get<std::string>();
      spec.prompts.push_back(checked(widen(ctx.tok->encode(item_first ? b + a : a + b, true)), i, ctx, "items"));
    }
  } else if (q->is_array()) {
    const std::vector<int64_t> query = ids_of(*q, "query");
    if (!it->is_array() || !items[0].is_array())
      bad_param("items", "a token-id 'query' goes with 'items' as a list of token-id lists");
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_array()) bad_param("items", "a token-id 'query' goes with 'items' as a list of token-id lists");
      std::vector<int64_t> item = ids_of(items[i], "items");
      std::vector<int64_t> ids = item_first ? item : query;
      const std::vector<int64_t>& rest = item_first ? query : item;
      ids.insert(ids.end(), rest.begin(), rest.end());
      spec.prompts.push_back(checked(std::move(ids), i, ctx, "items"));
    }
  } else {
    bad_param("query", "'query' must be a string or a list of token ids");
  }
  return spec;
}

std::vector<double> label_scores(const std::vector<float>& logits_then_lse, bool apply_softmax) {
  DP_CHECK(!logits_then_lse.empty());
  const size_t n = logits_then_lse.size() - 1;
  std::vector<double> out(n);
  if (!apply_softmax) {
    for (size_t i = 0; i < n; ++i) out[i] = std::exp(double(logits_then_lse[i]) - double(logits_then_lse[n]));
    return out;
  }
  double mx = -INFINITY, sum = 0;
  for (size_t i = 0; i < n; ++i) mx = std::max(mx, double(logits_then_lse[i]));
  for (size_t i = 0; i < n; ++i) sum += (out[i] = std::exp(double(logits_then_lse[i]) - mx));
  for (double& v : out) v /= sum;
  return out;
}

bool is_pair_score_request(const json& body) {
  return body.is_object() && (body.contains("text_1") || body.contains("text_2"));
}

PairScoreSpec parse_pair_score_request(const json& body, const ParseContext& ctx, bool embedding_server) {
  for (const auto& [k, v] : body.items())
    if (in(kScoreFields, k) && !in(kPairScoreFields, k))
      bad_param(k, fmt::format("'{}' is SGLang's scoring request (query, items, label_token_ids), which takes none of "
                               "vLLM's 'text_1', 'text_2': send one shape",
                               k));
  refuse_unknown(body, kPairScoreFields);
  check_model(body, ctx);
  check_user(body);
  if (ctx.skip_tokenizer) refuse_text_without_tokenizer("text_1", "vLLM's scoring request carries text");
  auto texts = [&](const char* name) {
    auto it = body.find(name);
    if (it == body.end() || it->is_null()) bad_param(name, fmt::format("'{}' is required", name));
    std::vector<std::string> out;
    if (it->is_string()) {
      out.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      if (it->empty()) bad_param(name, fmt::format("'{}' is an empty list", name));
      if (int64_t(it->size()) > kMaxRerankDocuments)
        bad_param(name,
                  fmt::format("'{}' holds {} texts; at most {} per request", name, it->size(), kMaxRerankDocuments));
      for (size_t i = 0; i < it->size(); ++i) {
        if (!(*it)[i].is_string())
          bad_param(name,
                    fmt::format("'{}' item {} must be a string (images and token ids are not taken here)", name, i));
        out.push_back((*it)[i].get<std::string>());
      }
    } else {
      bad_param(name, fmt::format("'{}' must be a string or a list of strings", name));
    }
    for (size_t i = 0; i < out.size(); ++i)
      if (out[i].empty()) bad_param(name, fmt::format("'{}' item {} is an empty string", name, i));
    return out;
  };
  const std::vector<std::string> t1 = texts("text_1"), t2 = texts("text_2");
  if (t1.size() != 1 && t1.size() != t2.size())
    bad_param("text_2", fmt::format("'text_1' holds {} texts and 'text_2' {}: give one 'text_1' for every 'text_2' "
                                    "text, or a single 'text_1' to score against each",
                                    t1.size(), t2.size()));
  PairScoreSpec spec;
  spec.n1 = t1.size();
  spec.n2 = t2.size();
  spec.cosine = embedding_server;
  if (spec.cosine) {
    // Every text is embedded alone, as /v1/embeddings embeds it (truncate_prompt_tokens too).
    const int64_t keep = truncation(body, ctx);
    for (size_t i = 0; i < t1.size(); ++i) spec.prompts.push_back(encode_text(json(t1[i]), i, ctx, "text_1", keep));
    for (size_t i = 0; i < t2.size(); ++i) spec.prompts.push_back(encode_text(json(t2[i]), i, ctx, "text_2", keep));
    return spec;
  }
  // Cutting a reranker prompt from the left would drop its instruction, not the text: refused.
  if (auto it = body.find("truncate_prompt_tokens"); it != body.end() && !it->is_null())
    bad_param("truncate_prompt_tokens", "'truncate_prompt_tokens' applies to an embedding server's scores "
                                        "(--is-embedding); a reranker prompt is never cut");
  spec.yes_id = reranker_answer_id(ctx, "yes", "/v1/score with text_1 / text_2");
  spec.no_id = reranker_answer_id(ctx, "no", "/v1/score with text_1 / text_2");
  for (size_t j = 0; j < t2.size(); ++j) {
    const std::vector<int32_t> ids =
        ctx.tok->encode(rerank_prompt(kDefaultRerankInstruct, t1[spec.first_of(j)], t2[j]), false);
    spec.prompts.push_back(checked(widen(ids), j, ctx, "text_2"));
  }
  return spec;
}

double cosine_similarity(const std::vector<float>& a, const std::vector<float>& b) {
  DP_CHECK(a.size() == b.size());
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0.0;
}

std::string rerank_prompt(const std::string& instruct, const std::string& query, const std::string& doc) {
  return "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
         "provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n<Instruct>: " +
         instruct + "\n<Query>: " + query + "\n<Document>: " + doc +
         "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";
}

double rerank_score(double yes_logit, double no_logit) {
  // softmax over the two: 1 / (1 + e^(no - yes)), stable for either sign.
  const double d = no_logit - yes_logit;
  return d > 0 ? std::exp(-d) / (1.0 + std::exp(-d)) : 1.0 / (1.0 + std::exp(d));
}

}  // namespace dpserve
