// Bounded random fuzzing: no input may crash or hang the tokenizers or the template interpreter.
// Tokenizers must accept any bytes; templates may only fail with dpserve::Error.
#include <random>

#include <gtest/gtest.h>

#include "core/check.h"
#include "test_data.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace dpserve {
namespace {

const char* kPieces[] = {"a", " ", "  ", "\n", "\t", "'s", "'LL", "123", "4567", "é", "e\xCC\x81", "你好", "\xF0\x9F\x91\x8D",
                         "\xE2\x80\x8D", "\xF0\x9F\x8F\xBD", "<|im_end|>", "<|im_start|>", "<s>", "</s>", "<|begin_of_text|>",
                         "<0x41>", "\xE2\x96\x81", "\xC4\xA0", "<think>", "\xFF", "\xC3", "\xE4\xBD", "\xED\xA0\x80", "\0",
                         "\r\n", "\xC2\xA0", "\xE3\x80\x80", "::", "0x", "()", "{{", "%}"};

std::string random_text(std::mt19937& rng) {
  std::string s;
  const int n = static_cast<int>(rng() % 40);
  for (int i = 0; i < n; ++i) {
    if (rng() % 4 == 0) {
      s.push_back(static_cast<char>(rng() & 0xFF));
    } else {
      s += kPieces[rng() % (sizeof(kPieces) / sizeof(kPieces[0]))];
    }
  }
  return s;
}

void fuzz_tokenizer(const Tokenizer& tok, uint32_t seed) {
  std::mt19937 rng(seed);
  for (int i = 0; i < 1500; ++i) {
    const std::string text = random_text(rng);
    std::vector<int32_t> ids;
    ASSERT_NO_THROW(ids = tok.encode(text, i % 2 == 0)) << "text #" << i;
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok.vocab_size());
    const std::string back = tok.decode(ids, i % 3 == 0);
    ASSERT_TRUE(utf8::is_valid(back));
    // Random ids decode to valid UTF-8 too; out-of-range ids are a clear error.
    std::vector<int32_t> rnd(rng() % 16);
    for (auto& id : rnd) id = static_cast<int32_t>(rng() % tok.vocab_size());
    ASSERT_TRUE(utf8::is_valid(tok.decode(rnd, false)));
    rnd.push_back(static_cast<int32_t>(tok.vocab_size()));
    EXPECT_THROW(tok.decode(rnd, false), Error);
  }
}

TEST(Fuzz, Llama2cTokenizer) { fuzz_tokenizer(*Tokenizer::load(test::shared_path("models/stories260K/tok512.bin")), 1); }
TEST(Fuzz, SentencePieceTokenizer) { fuzz_tokenizer(*Tokenizer::load(test::shared_path("models/llama2-tokenizer")), 2); }
TEST(Fuzz, Qwen3Tokenizer) { fuzz_tokenizer(*Tokenizer::load(test::shared_path("tokenizers/qwen3")), 3); }
TEST(Fuzz, Llama3Tokenizer) { fuzz_tokenizer(*Tokenizer::load(test::shared_path("tokenizers/llama3")), 4); }

const char* kTemplateAtoms[] = {
    "{%", "%}", "{%-", "-%}", "{{", "}}", "{{-", "-}}", "{#", "#}", " if ", " elif ", " else ", " endif ", " for ",
    " in ", " endfor ", " set ", " = ", " x ", " xs ", " ns ", " ns.a ", " namespace(a=1) ", " loop.index ",
    " loop.last ", " messages ", " messages[0] ", "['content']", ".role", " | trim", " | length", " | tojson",
    " | join(',')", " is defined ", " is not none ", " not ", " and ", " or ", " ~ ", " + ", " - ", " * ", " / ",
    " // ", " % ", " ** ", " == ", " != ", " < ", "(", ")", "[", "]", "{", "}", ":", ",", "'str'", "\"q\\n\"", "1",
    "2.5", "-3", "none", "true", " range(3) ", " range(100) ", "[::-1]", "[1:]", ".split(' ')", ".strip()",
    " macro m(a) ", " endmacro ", " m(1) ", " break ", " continue ", " raise_exception('x') ", "text ", "\n", "  ",
    " endset ", " recursive ", " include 'x' ", "'unterminated", "}}}", "%%", "{{{"};

TEST(Fuzz, ChatTemplateInterpreter) {
  std::mt19937 rng(5);
  nlohmann::ordered_json ctx = {{"messages", {{{"role", "user"}, {"content", "hi"}}, {{"role", "assistant"}, {"content", "yo"}}}},
                                {"xs", {1, 2, 3}}, {"add_generation_prompt", true}, {"bos_token", "<s>"}};
  int rendered = 0, rejected = 0;
  for (int i = 0; i < 4000; ++i) {
    std::string t;
    const int n = 1 + static_cast<int>(rng() % 30);
    for (int k = 0; k < n; ++k) t += kTemplateAtoms[rng() % (sizeof(kTemplateAtoms) / sizeof(kTemplateAtoms[0]))];
    try {
      const std::string out = render_chat_template(t, ctx);
      ++rendered;
    } catch (const Error&) {
      ++rejected;
    } catch (const std::exception& e) {
      FAIL() << "template #" << i << " threw a non-dpserve exception: " << e.what() << "\n" << t;
    }
  }
  EXPECT_GT(rendered, 50);  // the generator reaches real rendering paths, not only parse errors
  EXPECT_GT(rejected, 50);
}

TEST(Fuzz, MutatedRealTemplates) {
  const auto cfg = nlohmann::json::parse(test::read_file(test::shared_path("tokenizers/qwen3/tokenizer_config.json")));
  const std::string base = cfg.at("chat_template").get<std::string>();
  nlohmann::ordered_json ctx = {{"messages", {{{"role", "system"}, {"content", "s"}}, {{"role", "user"}, {"content", "u"}},
                                              {{"role", "assistant"}, {"content", "<think>r</think>a"}}}},
                                {"add_generation_prompt", true}};
  std::mt19937 rng(6);
  for (int i = 0; i < 600; ++i) {
    std::string t = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits && !t.empty(); ++k) {
      const size_t pos = rng() % t.size();
      switch (rng() % 3) {
        case 0: t.erase(pos, 1 + rng() % 8); break;
        case 1: t.insert(pos, 1, "{}%#-|()[]'\"\n"[rng() % 13]); break;
        default: t.insert(pos, t.substr(rng() % t.size(), rng() % 20)); break;
      }
    }
    try {
      render_chat_template(t, ctx);
    } catch (const Error&) {
    } catch (const std::exception& e) {
      FAIL() << "mutated template #" << i << " threw a non-dpserve exception: " << e.what();
    }
  }
}

TEST(Fuzz, RunawayTemplatesStop) {
  nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
  EXPECT_THROW(render_chat_template("{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}", ctx), Error);
  EXPECT_THROW(render_chat_template("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", ctx), Error);
  EXPECT_THROW(render_chat_template("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}", ctx), Error);
}

// What libFuzzer found (a stack overflow under ASan): a macro whose body nests ~100 unary operators
// deep, calling itself: within the parser's expression cap and the macro recursion cap, but 256 x 100
// evaluations deep together. Nested evaluation is now capped (512, across macro calls) with an error
// naming it; a recursion of 200 levels, as a template could use, still renders (Jinja2 gives
// "200,199,...,1,").
TEST(Fuzz, ExpressionsNestedThroughMacroRecursionStop) {
  nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
  const std::string deep = "{% macro r(n) %}{{ " + std::string(90, '-') + "r(n + 1) }}{% endmacro %}{{ r(0) }}";
  try {
    render_chat_template(deep, ctx);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nested too deeply"), std::string::npos) << e.what();
  }
  std::string want;
  for (int n = 200; n > 0; --n) want += std::to_string(n) + ",";
  EXPECT_EQ(render_chat_template("{% macro r(n) %}{% if n > 0 %}{{ n }},{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(200) }}", ctx),
            want);
}

// What libFuzzer found (an out-of-memory, not a crash): a string within the 64 MiB cap, iterated, becomes
// one value per character; nesting or recursion multiplies any list. Each must fail with the cap named.
TEST(Fuzz, MemoryAmplifyingTemplatesStop) {
  nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
  auto expect_error = [&](const std::string& tmpl, const std::string& words) {
    try {
      render_chat_template(tmpl, ctx);
      ADD_FAILURE() << "rendered: " << tmpl;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << tmpl << " -> " << e.what();
    }
  };
  expect_error("{% set s = 'x' * 60000000 %}{{ s|join(',')|length }}", "too many values");
  expect_error("{% set s = 'x' * 60000000 %}{% for c in s %}{% endfor %}", "too many values");
  expect_error("{% set ns = namespace(l=range(100000)|list) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
               "list too large");
  // Each macro level holds a 100000-item loop while it recurses: 256 levels would be ~3 GB.
  expect_error("{% macro f() %}{% for i in range(100000) %}{% if loop.first %}{{ f() }}{% endif %}{% endfor %}{% endmacro %}{{ f() }}",
               "too many values");
  expect_error("{{ 'ab'|indent(100000000) }}", "indent width");
  // An empty list repeated any number of times is empty (libFuzzer: [ ] * 60000000 looped 60M times).
  EXPECT_EQ(render_chat_template("{{ ([ ] * 4000000000000000000) | length }}", ctx), "0");
  expect_error("{{ ('x' * 1000)|replace('', 'y' * 100000) }}", "string too large");
  expect_error("{{ ('x' * 1000).replace('x', 'y' * 100000) }}", "string too large");
  expect_error("{{ ('y' * 100000).join('x' * 1000) }}", "string too large");
  // Under the caps (the sanitizer builds allow 1000000 values), Python's answers: len(list('é' * 300000))
  // twice in one render, and a budget that starts again with every render.
  for (int k = 0; k < 2; ++k) {
    EXPECT_EQ(render_chat_template("{{ ('\xC3\xA9' * 300000)|list|length + ('\xC3\xA9' * 300000)|list|length }}", ctx),
              "600000");
    EXPECT_EQ(render_chat_template("{{ ('ab' * 1500000)|length }}", ctx), "3000000");
  }
}

}  // namespace
}  // namespace dpserve
