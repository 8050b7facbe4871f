#include "bench_client/dataset.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <optional>
#include <random>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "tokenizer/tokenizer.h"

namespace dpserve::bench {
namespace {

// Uniform integer in [lo, hi] from the raw engine, so a seed gives the same data with any libstdc++.
int64_t uniform_int(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  const uint64_t span = uint64_t(hi - lo) + 1;
  const uint64_t limit = UINT64_MAX - UINT64_MAX % span;
  uint64_t r;
  do r = rng();
  while (r >= limit);
  return lo + int64_t(r % span);
}

int64_t draw_len(std::mt19937_64& rng, int64_t len, double ratio) {
  const int64_t lo = std::max<int64_t>(1, int64_t(std::floor(double(len) * ratio)));
  return uniform_int(rng, std::min(lo, len), len);
}

constexpr const char* kWords[] = {
    "the",     "of",      "and",    "to",      "in",      "is",     "that",    "for",    "it",      "as",
    "was",     "with",    "be",     "by",      "on",      "not",    "he",      "this",   "are",     "or",
    "his",     "from",    "at",     "which",   "but",     "have",   "an",      "had",    "they",    "you",
    "were",    "their",   "one",    "all",     "we",      "can",    "her",     "has",    "there",   "been",
    "if",      "more",    "when",   "will",    "would",   "who",    "so",      "no",     "time",    "people",
    "water",   "light",   "river",  "mountain", "city",   "house",  "garden",  "music",  "story",   "window",
    "morning", "evening", "friend", "letter",  "market",  "school", "engine",  "number", "question", "answer",
    "green",   "quiet",   "bright", "small",   "large",   "early",  "late",    "simple", "strong",  "gentle",
    "walked",  "found",   "opened", "carried", "painted", "looked", "thought", "turned", "built",   "listened",
};
constexpr size_t kNumWords = sizeof(kWords) / sizeof(kWords[0]);

int64_t estimate_tokens(std::string_view text) { return int64_t((text.size() + 3) / 4); }

std::vector<std::string> split_words(std::string_view text) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace((unsigned char)text[i])) ++i;
    const size_t b = i;
    while (i < text.size() && !std::isspace((unsigned char)text[i])) ++i;
    if (i > b) words.emplace_back(text.substr(b, i - b));
  }
  return words;
}

// Each request's prompt_len units (tokens, or words without a tokenizer) taken from a randomly chosen
// text, repeated from its start when it is shorter. Texts with no unit are never chosen.
void cut_prompts_from_texts(const std::vector<PromptReply>& texts, std::mt19937_64& rng, const Tokenizer* tok,
                            std::vector<BenchRequest>& out) {
  // Encoded lazily: a large file's texts are mostly never drawn.
  std::vector<std::optional<std::vector<int32_t>>> ids(tok ? texts.size() : 0);
  std::vector<std::optional<std::vector<std::string>>> words(tok ? 0 : texts.size());
  auto units = [&](size_t i) -> size_t {
    if (tok) {
      if (!ids[i]) ids[i] = tok->encode(texts[i].prompt, false);
      return ids[i]->size();
    }
    if (!words[i]) words[i] = split_words(texts[i].prompt);
    return words[i]->size();
  };
  std::vector<size_t> order(texts.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (auto& r : out) {
    // A uniformly drawn text; one without units is dropped from the draw for good.
    size_t pick = 0;
    for (;;) {
      if (order.empty()) fail("--dataset-path: no conversation's first turn has any text to build prompts from");
      const size_t k = size_t(uniform_int(rng, 0, int64_t(order.size()) - 1));
      if (units(order[k]) > 0) {
        pick = order[k];
        break;
      }
      order[k] = order.back();
      order.pop_back();
    }
    const size_t n = units(pick), want = size_t(r.prompt_len);
    if (tok) {
      r.prompt_ids.resize(want);
      for (size_t j = 0; j < want; ++j) r.prompt_ids[j] = (*ids[pick])[j % n];
      r.prompt = tok->decode(r.prompt_ids, true);
      r.prompt_len = int64_t(tok->encode(r.prompt, false).size());
    } else {
      for (size_t j = 0; j < want; ++j) {
        if (j) r.prompt += ' ';
        r.prompt += (*words[pick])[j % n];
      }
    }
  }
}

}  // namespace

std::vector<BenchRequest> make_random_dataset(const RandomDatasetSpec& spec, const Tokenizer* tok) {
  if (spec.input_len < 1) fail("--random-input-len must be >= 1, got {}", spec.input_len);
  if (spec.output_len < 1) fail("--random-output-len must be >= 1, got {}", spec.output_len);
  if (!(spec.range_ratio >= 0 && spec.range_ratio <= 1))
    fail("--random-range-ratio must be in [0, 1], got {}", spec.range_ratio);
  std::mt19937_64 rng(spec.seed);
  std::vector<BenchRequest> out(spec.num_prompts);
  for (auto& r : out) {
    r.prompt_len = draw_len(rng, spec.input_len, spec.range_ratio);
    r.output_len = draw_len(rng, spec.output_len, spec.range_ratio);
  }
  std::vector<int32_t> pool;  // ids that decode to ordinary text
  if (tok) {
    for (int64_t id = 0; id < tok->vocab_size(); ++id)
      if (!tok->is_special(int32_t(id)) && id != tok->bos_id()) pool.push_back(int32_t(id));
    for (int32_t e : tok->eos_ids()) std::erase(pool, e);
    if (pool.empty()) fail("the tokenizer has no non-special tokens to build random prompts from");
  }
  if (spec.source && !spec.source->empty()) {
    cut_prompts_from_texts(*spec.source, rng, tok, out);
    return out;
  }
  for (auto& r : out) {
    if (tok) {
      r.prompt_ids.resize(size_t(r.prompt_len));
      for (auto& id : r.prompt_ids) id = pool[size_t(uniform_int(rng, 0, int64_t(pool.size()) - 1))];
      r.prompt = tok->decode(r.prompt_ids, true);
      // Decoded random ids re-encode into a different number of tokens; the text is what is sent.
      r.prompt_len = int64_t(tok->encode(r.prompt, false).size());
    } else {
      for (int64_t w = 0; w < r.prompt_len; ++w) {
        if (w) r.prompt += ' ';
        r.prompt += kWords[uniform_int(rng, 0, int64_t(kNumWords) - 1)];
      }
    }
  }
  return out;
}

std::vector<PromptReply> parse_sharegpt(std::string_view json_text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::parse_error& e) {
    fail("ShareGPT dataset is not valid JSON: {}", e.what());
  }
  if (!j.is_array()) fail("ShareGPT dataset must be a JSON list of conversations");
  std::vector<PromptReply> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& item = j[i];
    if (!item.is_object() || !item.contains("conversations"))
      fail("ShareGPT dataset: entry {} has no \"conversations\" list", i);
    const auto& conv = item["conversations"];
    if (!conv.is_array()) fail("ShareGPT dataset: entry {}: \"conversations\" must be a list", i);
    if (conv.size() < 2) continue;
    std::string turn[2];
    for (size_t t = 0; t < 2; ++t) {
      if (!conv[t].is_object() || !conv[t].contains("value") || !conv[t]["value"].is_string())
        fail("ShareGPT dataset: entry {}, turn {} needs a string \"value\"", i, t);
      turn[t] = conv[t]["value"].get<std::string>();
    }
    out.push_back({std::move(turn[0]), std::move(turn[1])});
  }
  return out;
}

std::vector<BenchRequest> make_sharegpt_dataset(const std::vector<PromptReply>& pairs, const ShareGptSpec& spec,
                                                const Tokenizer* tok) {
  if (spec.fixed_output_len < 0) fail("--sharegpt-output-len must be >= 0, got {}", spec.fixed_output_len);
  std::vector<size_t> order(pairs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 rng(spec.seed);
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[size_t(uniform_int(rng, 0, int64_t(i) - 1))]);
  std::vector<BenchRequest> out;
  for (size_t k = 0; k < order.size() && out.size() < spec.num_prompts; ++k) {
    const PromptReply& p = pairs[order[k]];
    BenchRequest r;
    r.prompt = p.prompt;
    if (tok) {
      r.prompt_ids = tok->encode(p.prompt, false);
      r.prompt_len = int64_t(r.prompt_ids.size());
    } else {
      r.prompt_len = estimate_tokens(p.prompt);
    }
    if (spec.fixed_output_len > 0) {
      r.output_len = spec.fixed_output_len;
    } else {
      r.output_len = tok ? int64_t(tok->encode(p.reply, false).size()) : estimate_tokens(p.reply);
    }
    if (r.prompt_len < 2 || r.output_len < 2) continue;
    if (r.prompt_len > 1024 || (spec.fixed_output_len == 0 && r.prompt_len + r.output_len > 2048)) continue;
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace dpserve::bench
