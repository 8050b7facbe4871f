#include "tokenizer/gguf_vocab.h"

#include <algorithm>
#include <array>
#include <cctype>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "model/gguf_end_of_generation.h"
#include "model/gguf_file.h"
#include "model/gguf_set.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/sentencepiece_tokenizer.h"

namespace dpserve {

namespace {

// llama.cpp's token types (llama_token_type), the same numbers as SentencePiece's piece types.
enum TokenType : int64_t { kUndefined = 0, kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// The byte-level BPE pre-tokenizers a `gpt2` vocabulary may name (tokenizer.ggml.pre, llama.cpp's
// spellings), as the Hugging Face tokenizer.json of those models defines them: one row per
// tokenizer family. Add a row for another family.
struct PreTokenizerRow {
  std::array<std::string_view, 3> names;
  const char* normalizer;     // tokenizer.json "normalizer"
  const char* pre_tokenizer;  // tokenizer.json "pre_tokenizer"
  bool ignore_merges;         // a word that is a whole token is not merged (Llama-3's tokenizer.json)
  bool add_bos;               // llama.cpp's default when tokenizer.ggml.add_bos_token is absent
};

constexpr std::array<PreTokenizerRow, 5> kPreTokenizers = {{
    {{"llama-bpe", "llama3", "llama-v3"},
     "null",
     R"json({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})json",
     true, true},
    {{"qwen2", "deepseek-r1-qwen", ""},
     R"json({"type": "NFC"})json",
     R"json({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]})json",
     false, false},
    // DeepSeek-V3 / R1 (llama.cpp's converter writes "deepseek-v3"): digits in threes, runs of CJK
    // ideographs and kana, then words with their leading punctuation; no normalizer.
    {{"deepseek-v3", "", ""},
     "null",
     R"json({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": false},
        {"type": "Split", "pattern": {"Regex": "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"}, "behavior": "Isolated", "invert": false},
        {"type": "Split", "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})json",
     false, true},
    // o200k, tiktoken's GPT-4o vocabulary: Phi-4-mini and gpt-oss; Llama 4's splits text the same way (llama.cpp
    // runs its "llama4" as "gpt-4o"). Words keep their case run and an English contraction; digits in threes; '/'
    // and newlines stick to punctuation.
    {{"gpt-4o", "llama4", ""},
     "null",
     R"json({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})json",
     false, false},
    // Tekken, Mistral's tiktoken-style vocabulary: Mistral Nemo, Mistral Small 3.x, Ministral, Devstral.
    // The o200k word rule without contractions, single digits; whole-token words are not merged.
    {{"tekken", "", ""},
     "null",
     R"json({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})json",
     true, true},
}};

const PreTokenizerRow* find_pre(std::string_view name) {
  for (const auto& row : kPreTokenizers)
    for (std::string_view n : row.names)
      if (!n.empty() && n == name) return &row;
  return nullptr;
}

std::string pre_names() {
  std::string out;
  for (const auto& row : kPreTokenizers)
    for (std::string_view n : row.names)
      if (!n.empty()) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

struct Vocab {
  const GgufMetadata& m;
  std::vector<std::string> tokens;
  std::vector<int64_t> types;  // kNormal where the file has no token_type

  // A special id key, -1 when absent; an id outside the vocabulary is an error.
  int32_t id(const char* key) const {
    const auto v = m.get_int(key);
    if (!v) return -1;
    if (*v < 0 || *v >= int64_t(tokens.size()))
      fail("GGUF {}: {} is {}, outside the vocabulary of {} tokens", m.where(), key, *v, tokens.size());
    return int32_t(*v);
  }
  // EOS, the end-of-turn / end-of-message ids, then the tokens whose text ends a turn: all stop
  // generation, as in llama.cpp (model/gguf_end_of_generation.h).
  std::vector<int32_t> stop_ids() const {
    for (const char* k : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"})
      id(k);  // an id outside the vocabulary is an error here
    return gguf_end_of_generation_ids(m);
  }
};

Vocab read_vocab(const GgufMetadata& m) {
  Vocab v{m, {}, {}};
  const GgufValue* toks = m.get_array("tokenizer.ggml.tokens", GgufType::String);
  if (!toks || toks->count == 0) fail("GGUF {}: tokenizer.ggml.tokens is missing or empty", m.where());
  v.tokens.assign(toks->strings.begin(), toks->strings.end());
  const uint64_t n = toks->count;
  v.types.assign(n, kNormal);
  if (const GgufValue* tt = m.get_array("tokenizer.ggml.token_type", GgufType::I32)) {
    if (tt->count != n)
      fail("GGUF {}: tokenizer.ggml.token_type has {} entries for {} tokens", m.where(), tt->count, n);
    for (uint64_t i = 0; i < n; ++i) {
      v.types[i] = tt->int_at(i);
      if (v.types[i] < kUndefined || v.types[i] > kByte)
        fail("GGUF {}: tokenizer.ggml.token_type of token {} is {}, not a llama.cpp token type (0-6)", m.where(), i,
             v.types[i]);
    }
  }
  return v;
}

std::optional<std::string> chat_template(const GgufMetadata& m) { return m.get_string("tokenizer.chat_template"); }

bool is_byte_piece(const std::string& p) {
  return p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>' && std::isxdigit(static_cast<unsigned char>(p[3])) &&
         std::isxdigit(static_cast<unsigned char>(p[4]));
}

std::unique_ptr<Tokenizer> spm_tokenizer(const GgufMetadata& m, Vocab v) {
  SpmVocab s;
  const size_t n = v.tokens.size();
  if (const GgufValue* sc = m.get_array("tokenizer.ggml.scores", GgufType::F32)) {
    if (sc->count != n) fail("GGUF {}: tokenizer.ggml.scores has {} entries for {} tokens", m.where(), sc->count, n);
    s.scores.resize(n);
    for (size_t i = 0; i < n; ++i) s.scores[i] = float(sc->float_at(i));
  } else {
    s.scores.assign(n, 0.0f);
  }
  // llama.cpp's defaults for a `llama` vocabulary.
  s.bos = m.has("tokenizer.ggml.bos_token_id") ? v.id("tokenizer.ggml.bos_token_id") : (n > 1 ? 1 : -1);
  s.eos = m.has("tokenizer.ggml.eos_token_id") ? v.id("tokenizer.ggml.eos_token_id") : (n > 2 ? 2 : -1);
  s.unk = m.has("tokenizer.ggml.unknown_token_id") ? v.id("tokenizer.ggml.unknown_token_id") : 0;
  const bool typed = m.has("tokenizer.ggml.token_type");
  s.types.resize(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t t = v.types[i];
    if (!typed) {  // infer what the types would say, as for a llama2.c vocabulary
      t = int32_t(i) == s.unk ? kUnknown : (int32_t(i) == s.bos || int32_t(i) == s.eos) ? kControl
          : is_byte_piece(v.tokens[i])                                                 ? kByte
                                                                                       : kNormal;
    }
    s.types[i] = uint8_t(t == kUndefined ? kNormal : t);
  }
  s.add_bos = m.get_bool("tokenizer.ggml.add_bos_token").value_or(true);
  s.add_eos = m.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  s.add_dummy_prefix = m.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
  s.remove_extra_whitespaces = m.get_bool("tokenizer.ggml.remove_extra_whitespaces").value_or(false);
  for (int32_t id : v.stop_ids())
    if (id != s.eos) s.extra_stop_ids.push_back(id);
  s.chat_template = chat_template(m);
  s.pieces = std::move(v.tokens);
  return SentencePieceTokenizer::from_vocab(std::move(s));
}

std::unique_ptr<Tokenizer> bpe_tokenizer(const GgufMetadata& m, Vocab v) {
  const auto pre = m.get_string("tokenizer.ggml.pre");
  if (!pre)
    fail("GGUF {}: tokenizer.ggml.pre is missing: a gpt2 vocabulary needs its pre-tokenizer's name (supported: {})",
         m.where(), pre_names());
  const PreTokenizerRow* row = find_pre(*pre);
  if (!row)
    fail("GGUF {}: tokenizer.ggml.pre \"{}\" is not a pre-tokenizer dpserve knows (supported: {}); start with "
         "--tokenizer-path set to the model's Hugging Face folder (its tokenizer.json) to use that tokenizer",
         m.where(), *pre, pre_names());
  const GgufValue* mg = m.get_array("tokenizer.ggml.merges", GgufType::String);
  if (!mg) fail("GGUF {}: tokenizer.ggml.merges is missing (a gpt2 vocabulary needs its merges)", m.where());
  HfTokenizerParts p;
  p.normalizer = nlohmann::json::parse(row->normalizer);
  p.pre_tokenizer = nlohmann::json::parse(row->pre_tokenizer);
  p.decoder = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  // Control and user-defined tokens are the added tokens of tokenizer.json (llama.cpp's converter
  // writes special ones as control); both are matched in the text before the BPE runs.
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const int64_t t = v.types[i];
    if (t != kControl && t != kUserDefined && t != kUnknown) continue;
    if (v.tokens[i].empty()) continue;
    AddedToken a;
    a.id = int32_t(i);
    a.content = v.tokens[i];
    a.special = t != kUserDefined;
    p.added.push_back(std::move(a));
  }
  const int32_t bos = v.id("tokenizer.ggml.bos_token_id");
  const bool add_bos = m.get_bool("tokenizer.ggml.add_bos_token").value_or(row->add_bos) && bos >= 0;
  const std::vector<int32_t> stops = v.stop_ids();
  const int32_t eos = v.id("tokenizer.ggml.eos_token_id");
  if (add_bos) p.prefix.push_back(bos);
  if (m.get_bool("tokenizer.ggml.add_eos_token").value_or(false) && eos >= 0) p.suffix.push_back(eos);
  p.bos_id = add_bos ? bos : -1;
  p.eos_ids = stops;
  p.chat_template = chat_template(m);
  BpeOptions o;
  o.byte_level = true;
  o.ignore_merges = row->ignore_merges;
  p.model = std::make_unique<BpeModel>(std::move(v.tokens),
                                       std::vector<std::string>(mg->strings.begin(), mg->strings.end()), o);
  return HfTokenizer::from_parts(std::move(p));
}

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& path) {
  const std::string first = find_gguf_model(path);
  if (first.empty()) fail("{} is not a GGUF model", path);
  const GgufFile f(first);  // the vocabulary lives in the first file of a split set
  const GgufMetadata& m = f.metadata();
  const auto model = m.get_string("tokenizer.ggml.model");
  if (!model || *model == "none" || *model == "no_vocab")
    fail("GGUF {}: the file has no vocabulary (tokenizer.ggml.model): give --tokenizer-path, or prompts as ids",
         first);
  try {
    if (*model == "llama") return spm_tokenizer(m, read_vocab(m));
    if (*model == "gpt2") return bpe_tokenizer(m, read_vocab(m));
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.rfind("GGUF ", 0) == 0) throw;
    fail("GGUF {}: {}", first, what);
  }
  fail("GGUF {}: tokenizer.ggml.model \"{}\" is not supported (supported: llama, gpt2)", first, *model);
}

}  // namespace dpserve
