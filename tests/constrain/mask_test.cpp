// Token masks against the brute-force reference: at states reached by random walks, the mask
// equals the set of tokens whose bytes keep the output a prefix of some string of the grammar
// (EOS exactly where the grammar may end; special tokens never), on synthetic odd vocabularies and
// the real Qwen3, Llama-3 and Llama-2 (byte-fallback) tokenizers.
#include <algorithm>
#include <random>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "constrain/automaton.h"
#include "constrain/gbnf_compiler.h"
#include "constrain/json_schema_compiler.h"
#include "constrain/matcher.h"
#include "constrain/regex_compiler.h"
#include "constrain/tool_call_grammar.h"
#include "constrain/reasoning_prefix.h"
#include "constrain/special_token.h"
#include "harmony_tokenizer.h"
#include "reference_recognizer.h"
#include "tests/tokenizer/test_data.h"
#include "tokenizer/tokenizer.h"

namespace dpserve::constrain {
namespace {

using test::ReferenceRecognizer;

// What a token is, from the tokenizer itself (not from the VocabIndex under test).
struct Vocab {
  std::vector<std::string> bytes;
  std::vector<bool> text;
  std::vector<int32_t> eos;
  int64_t mask_size = 0;
};

// A special token matches only its spelling (special_token.h), which only a grammar naming it has;
// text tokens holding 0xFE / 0xFF (no UTF-8 text does) could spell one, and are never matched.
Vocab vocab_of(const Tokenizer& tok, int64_t mask_size) {
  Vocab v;
  v.mask_size = mask_size;
  v.eos = tok.eos_ids();
  for (int64_t i = 0; i < tok.vocab_size(); ++i) {
    const bool special = tok.is_special(int32_t(i));
    const std::string piece = special ? tok.id_to_piece(int32_t(i)) : "";
    v.bytes.push_back(special ? (piece.empty() ? "" : special_token_spelling(piece)) : tok.token_bytes(int32_t(i)));
    const bool non_utf8 = !special && v.bytes.back().find_first_of(std::string_view("\xFE\xFF", 2)) != std::string::npos;
    v.text.push_back(!non_utf8 && !v.bytes.back().empty() &&
                     std::find(v.eos.begin(), v.eos.end(), int32_t(i)) == v.eos.end());
  }
  return v;
}

// Odd tokens: every single byte, UTF-8 characters split across tokens, tokens spanning JSON
// structure, duplicates, an empty token, special tokens, two EOS tokens.
Vocab odd_vocab() {
  Vocab v;
  for (int b = 0; b < 256; ++b) v.bytes.push_back(std::string(1, char(b)));
  for (const char* s : {"\xE4", "\xE4\xBD", "\xBD\xA0", "\xA0\"", "\xE4\xBD\xA0", "\xE5\xA5\xBD\xE4",
                        "\xF0\x9F", "\x98\x80", "\xF0\x9F\x98\x80", "\xC3\xA9", "\xC3", "\xA9\"}",
                        "\":", "\": \"", "\"},{\"", "{\"", "\"}", "}]", "[{", " {\"name\": \"", "\\u00", "\\\"",
                        "\\n", "00e9", "-1", "12", "3.5", "e+", "true", "false", "null", "nul", "ab", "abc",
                        "name", "\"name\"", "age", "\n\n", "  ", ",\n  \"", "\t", "xyz\"", "ab", "<tool_call>",
                        "é", "日本", "語"})
    v.bytes.push_back(s);
  v.bytes.push_back("");  // decodes to nothing: never allowed
  for (size_t i = 0; i < v.bytes.size(); ++i) v.text.push_back(!v.bytes[i].empty());
  for (const char* s : {"<special>", "<eos>", "<eot>"}) {
    v.bytes.push_back(s);
    v.text.push_back(false);
  }
  v.eos = {int32_t(v.bytes.size() - 2), int32_t(v.bytes.size() - 1)};
  v.mask_size = int64_t(v.bytes.size()) + 7;  // padding ids past the vocabulary
  return v;
}

// The reference mask: per token, run its bytes from the state (tokens sorted so a shared prefix is
// run once; a dead prefix kills every token that starts with it).
std::vector<bool> reference_mask(ReferenceRecognizer& ref, const ReferenceRecognizer::State& st, const Vocab& v) {
  std::vector<bool> m(size_t(v.mask_size), false);
  std::vector<int32_t> order;
  for (size_t i = 0; i < v.bytes.size(); ++i)
    if (v.text[i]) order.push_back(int32_t(i));
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return v.bytes[size_t(a)] < v.bytes[size_t(b)]; });
  std::vector<ReferenceRecognizer::State> at{st};  // at[d]: state after d bytes of the current token
  const std::string* prev = nullptr;
  for (int32_t id : order) {
    const std::string& s = v.bytes[size_t(id)];
    size_t lcp = 0;
    if (prev)
      while (lcp < prev->size() && lcp < s.size() && (*prev)[lcp] == s[lcp] && lcp + 1 < at.size()) ++lcp;
    at.resize(lcp + 1);
    bool ok = at.back().viable();
    for (size_t d = lcp; d < s.size() && ok; ++d) {
      at.push_back(ref.step(at.back(), uint8_t(s[d])));
      ok = at.back().viable();
    }
    m[size_t(id)] = ok && at.size() == s.size() + 1;
    prev = &s;
  }
  if (st.can_end)
    for (int32_t e : v.eos) m[size_t(e)] = true;
  return m;
}

std::string show(const std::string& s) {
  std::string out;
  for (unsigned char c : s) out += (c >= 0x20 && c < 0x7F && c != '\\') ? std::string(1, char(c)) : fmt::format("\\x{:02X}", c);
  return out;
}

// Walks `steps` tokens, comparing the mask with the reference every `check_every` steps.
void walk_and_compare(const Grammar& g, const Vocab& v, uint64_t seed, int steps, int check_every) {
  auto automaton = Automaton::build(g);
  auto index = std::make_shared<VocabIndex>(v.bytes, v.text, v.eos, v.mask_size);
  auto cache = std::make_shared<TokenMaskCache>(automaton, index);
  Matcher m(cache);
  ReferenceRecognizer ref(g);
  auto st = ref.start();
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> mask(index->mask_words());
  int checks = 0;
  std::string out;
  for (int step = 0; step < steps; ++step) {
    m.fill_mask(mask.data());
    std::vector<int32_t> allowed;
    for (int64_t t = 0; t < v.mask_size; ++t)
      if ((mask[size_t(t) >> 6] >> (t & 63)) & 1) allowed.push_back(int32_t(t));
    ASSERT_FALSE(allowed.empty()) << "empty mask at step " << step;
    ASSERT_EQ(m.can_end(), st.can_end) << "step " << step;
    if (step % check_every == 0) {
      ++checks;
      const std::vector<bool> want = reference_mask(ref, st, v);
      int shown = 0;
      for (int64_t t = 0; t < v.mask_size && shown < 10; ++t) {
        const bool got = (mask[size_t(t) >> 6] >> (t & 63)) & 1;
        if (got != want[size_t(t)]) {
          ++shown;
          ADD_FAILURE() << "step " << step << ": token " << t << " '"
                        << (size_t(t) < v.bytes.size() ? show(v.bytes[size_t(t)]) : "<pad>") << "' mask " << got
                        << " reference " << want[size_t(t)];
        }
      }
      if (shown) return;
    }
    // Mostly short tokens (they reach structure: quotes, commas, braces), sometimes any token.
    std::vector<int32_t> pick = allowed;
    const double r = std::uniform_real_distribution<double>(0, 1)(rng);
    std::vector<int32_t> specials;  // tags a grammar names (harmony's): taken often, so walks get past them
    for (int32_t t : allowed)
      if (size_t(t) < v.bytes.size() && !v.bytes[size_t(t)].empty() && v.bytes[size_t(t)][0] == kSpecialOpen)
        specials.push_back(t);
    if (!specials.empty() && r >= 0.6 && r < 0.9) {
      pick = specials;
    } else if (r < 0.6) {
      std::vector<int32_t> short_ones;
      for (int32_t t : allowed)
        if (size_t(t) < v.bytes.size() && v.text[size_t(t)] && v.bytes[size_t(t)].size() <= 2) short_ones.push_back(t);
      if (!short_ones.empty()) pick = short_ones;
    }
    std::vector<int32_t> non_eos;
    for (int32_t t : pick)
      if (std::find(v.eos.begin(), v.eos.end(), t) == v.eos.end()) non_eos.push_back(t);
    if (!non_eos.empty() && r > 0.02) pick = non_eos;  // end rarely: long walks see more states
    const int32_t tok = pick[std::uniform_int_distribution<size_t>(0, pick.size() - 1)(rng)];
    ASSERT_TRUE(m.accept(tok)) << "an allowed token was refused";
    if (std::find(v.eos.begin(), v.eos.end(), tok) != v.eos.end()) break;
    out += v.bytes[size_t(tok)];
    st = ref.run(st, v.bytes[size_t(tok)]);
    ASSERT_TRUE(st.viable()) << "the reference rejects an allowed token '" << show(v.bytes[size_t(tok)]) << "'";
  }
  EXPECT_GT(checks, 0);
  if (getenv("CONSTRAIN_TEST_VERBOSE")) fprintf(stderr, "seed %llu, %d checks: %s\n", (unsigned long long)seed, checks, show(out).c_str());
}

const char* kToolSchema = R"({
  "type": "object",
  "properties": {
    "location": {"type": "string", "description": "City"},
    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    "days": {"type": "integer", "minimum": 1, "maximum": 14},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
    "detail": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}]}
  },
  "required": ["location", "days"],
  "additionalProperties": false
})";

const char* kRecursiveSchema = R"({
  "$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
            "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}}, "required": ["v"]}},
  "$ref": "#/$defs/node"
})";

const char* kArithmetic = R"g(
root  ::= expr
expr  ::= term (("+" | "-") term)*
term  ::= factor (("*" | "/") factor)*
factor ::= [0-9]+ | "(" expr ")" | "-" factor
)g";

Grammar schema(const char* s) { return json_schema_grammar(s); }
Grammar regex(const char* s) { return regex_grammar(s); }

TEST(MaskOddVocab, ToolSchema) {
  for (uint64_t seed = 1; seed <= 6; ++seed) walk_and_compare(schema(kToolSchema), odd_vocab(), seed, 120, 3);
}
TEST(MaskOddVocab, AnyJsonObject) {
  for (uint64_t seed = 1; seed <= 6; ++seed) walk_and_compare(json_object_grammar(), odd_vocab(), seed, 120, 3);
}
TEST(MaskOddVocab, RecursiveRef) {
  for (uint64_t seed = 1; seed <= 6; ++seed) walk_and_compare(schema(kRecursiveSchema), odd_vocab(), seed, 120, 3);
}
TEST(MaskOddVocab, UnicodeRegex) {
  for (uint64_t seed = 1; seed <= 6; ++seed)
    walk_and_compare(regex("[A-Z][a-zé日本語]{1,5}( [\\u{1F600}-\\u{1F64F}]| \\d{2})*(\\.|!)?"), odd_vocab(), seed, 60, 2);
}
TEST(MaskOddVocab, RecursiveGbnf) {
  for (uint64_t seed = 1; seed <= 6; ++seed) walk_and_compare(gbnf_grammar(kArithmetic), odd_vocab(), seed, 80, 2);
}
TEST(MaskOddVocab, AmbiguousGbnf) {
  // Two parses stay alive (an item is a word or a word list), and a rule that may be empty repeats.
  const char* g = R"(
root  ::= item ("," item)*
item  ::= word | words
words ::= word (" " word)*
word  ::= [a-c]+ bang
bang  ::= "" | "!"
)";
  for (uint64_t seed = 1; seed <= 4; ++seed) walk_and_compare(gbnf_grammar(g), odd_vocab(), seed, 60, 2);
}

ToolCallSpec tools_spec(bool think) {
  ToolCallSpec s;
  s.tools.push_back({"get_weather", nlohmann::ordered_json::parse(
                                        R"({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})")});
  s.tools.push_back({"get_time", nlohmann::ordered_json::parse(R"({"type": "object", "properties": {}})")});
  s.think = think;
  return s;
}

TEST(MaskOddVocab, ToolCallsWithThinking) {
  for (uint64_t seed = 1; seed <= 4; ++seed) walk_and_compare(tool_call_grammar(tools_spec(true)), odd_vocab(), seed, 80, 2);
}

struct RealTokenizer {
  std::unique_ptr<Tokenizer> tok;
  Vocab vocab;
};

const RealTokenizer& real(const std::string& rel, int64_t mask_size) {
  static std::map<std::string, RealTokenizer> cache;
  auto it = cache.find(rel);
  if (it == cache.end()) {
    RealTokenizer r;
    r.tok = Tokenizer::load(dpserve::test::shared_path(rel));
    r.vocab = vocab_of(*r.tok, std::max<int64_t>(mask_size, r.tok->vocab_size()));
    it = cache.emplace(rel, std::move(r)).first;
  }
  return it->second;
}

// Qwen3's 151,669 tokens inside a logits row of 151,936 (the model pads its vocabulary).
const Vocab& qwen3() { return real("tokenizers/qwen3", 151936).vocab; }
const Vocab& llama3() { return real("tokenizers/llama3", 128256).vocab; }
const Vocab& llama2() { return real("models/llama2-tokenizer/tokenizer.model", 32000).vocab; }

TEST(MaskQwen3, ToolSchema) { walk_and_compare(schema(kToolSchema), qwen3(), 11, 40, 8); }
TEST(MaskQwen3, AnyJsonObject) { walk_and_compare(json_object_grammar(), qwen3(), 12, 40, 8); }
TEST(MaskQwen3, RegexAndGbnf) {
  walk_and_compare(regex("(Yes|No), because [a-z ]{3,12}\\."), qwen3(), 13, 20, 5);
  walk_and_compare(gbnf_grammar(kArithmetic), qwen3(), 14, 30, 6);
}
TEST(MaskQwen3, ToolCalls) { walk_and_compare(tool_call_grammar(tools_spec(true)), qwen3(), 15, 30, 6); }
TEST(MaskLlama3, ToolSchema) { walk_and_compare(schema(kToolSchema), llama3(), 21, 40, 8); }
TEST(MaskLlama3, RecursiveRef) { walk_and_compare(schema(kRecursiveSchema), llama3(), 22, 40, 8); }
TEST(MaskLlama2ByteFallback, UnicodeRegex) {
  // Llama-2 spells characters outside its vocabulary as <0xNN> byte tokens.
  walk_and_compare(regex("[日本語é]{2,6}-[\\u{1F600}-\\u{1F64F}]{1,3}"), llama2(), 31, 20, 4);
}
TEST(MaskLlama2ByteFallback, ToolSchema) { walk_and_compare(schema(kToolSchema), llama2(), 32, 40, 8); }

// gpt-oss's harmony format: its tags are special tokens a grammar names (tool calls, the final
// message before a response_format's answer).
const Vocab& harmony() {
  static const Vocab v = vocab_of(test::harmony_tokenizer(), 151936);
  return v;
}
TEST(MaskHarmony, ToolCalls) {
  ToolCallSpec s = tools_spec(false);
  s.format = ToolCallFormat::kHarmony;
  for (bool text : {false, true}) {
    s.text = text;
    for (uint64_t seed = 41; seed <= 43; ++seed) walk_and_compare(tool_call_grammar(s), harmony(), seed, 40, 5);
  }
}
TEST(MaskHarmony, ResponseFormatAfterTheAnalysis) {
  Grammar g = schema(kToolSchema);
  add_reasoning_prefix(g, ReasoningPrefix::kHarmony);
  for (uint64_t seed = 51; seed <= 53; ++seed) walk_and_compare(g, harmony(), seed, 40, 5);
}

}  // namespace
}  // namespace dpserve::constrain
