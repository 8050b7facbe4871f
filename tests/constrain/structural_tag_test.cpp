// Structural tags against their definition (xgrammar's documentation of the legacy and current
// formats): the examples it gives, refusals named by path, and free text with triggered tags
// against a backtracking recognizer written from that definition (the first trigger, exclude or
// end string completed in the free text decides; tag contents checked with std::regex).
#include <functional>
#include <random>
#include <regex>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "byte_matcher.h"
#include "constrain/automaton.h"
#include "constrain/structural_tag.h"
#include "core/check.h"

namespace dpserve::constrain {
namespace {

using ojson = nlohmann::ordered_json;
using test::accepts;

std::shared_ptr<const Automaton> tag(const ojson& spec) { return Automaton::build(structural_tag_grammar(spec.dump())); }

std::string error_of(const ojson& spec) {
  try {
    structural_tag_grammar(spec.dump());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const ojson kCitySchema = ojson::parse(R"({"type": "object", "properties": {"city": {"type": "string"}},
                                           "required": ["city"], "additionalProperties": false})");

TEST(StructuralTag, LegacyShapeAsVllmDocumentsIt) {
  const ojson spec = {{"type", "structural_tag"},
                      {"structures", {{{"begin", "<function=get_weather>"}, {"schema", kCitySchema}, {"end", "</function>"}}}},
                      {"triggers", {"<function="}}};
  auto a = tag(spec);
  EXPECT_TRUE(accepts(a, ""));
  EXPECT_TRUE(accepts(a, "Plain text, no call."));
  EXPECT_TRUE(accepts(a, R"(I will call a tool now. <function=get_weather>{"city": "San Francisco"}</function>)"));
  EXPECT_TRUE(accepts(a, R"(<function=get_weather>{"city":"A"}</function> and <function=get_weather>{"city":"B"}</function> done)"));
  EXPECT_TRUE(accepts(a, "<function"));  // a trigger not yet complete is still free text
  // Once the trigger is written, only a tag may follow.
  EXPECT_FALSE(accepts(a, "<function=get_time>{}</function>"));
  EXPECT_FALSE(accepts(a, R"(<function=get_weather>{"town": "X"}</function>)"));
  EXPECT_FALSE(accepts(a, R"(<function=get_weather>{"city": "X"})"));
  EXPECT_FALSE(accepts(a, "x <function="));
  // A spec without "type" is the same legacy shape (SGLang's sampling_params text).
  ojson bare = spec;
  bare.erase("type");
  EXPECT_TRUE(accepts(tag(bare), R"(a <function=get_weather>{"city": "Q"}</function>)"));
}

TEST(StructuralTag, TriggeredTagsDispatchOnTheTrigger) {
  ojson tags = ojson::parse(R"([
      {"type": "tag", "begin": "<function=get_weather>", "end": "</function>"},
      {"type": "tag", "begin": "<function=get_time>", "end": "</function>",
       "content": {"type": "json_schema", "json_schema": {"type": "object", "properties": {"tz": {"type": "string"}},
                                                          "required": ["tz"]}}}])");
  tags[0]["content"] = {{"type", "json_schema"}, {"json_schema", kCitySchema}};
  const ojson base = {{"type", "triggered_tags"}, {"triggers", {"<function="}}, {"tags", tags}};
  auto plain = tag({{"type", "structural_tag"}, {"format", base}});
  EXPECT_TRUE(accepts(plain, R"(Let me check. <function=get_time>{"tz": "UTC"}</function>)"));
  EXPECT_TRUE(accepts(plain, R"(<function=get_weather>{"city": "Oslo"}</function><function=get_time>{"tz": "CET"}</function>)"));
  EXPECT_FALSE(accepts(plain, R"(<function=get_time>{"city": "Oslo"}</function>)"));

  ojson f = base;
  f["at_least_one"] = true;
  auto one = tag({{"type", "structural_tag"}, {"format", f}});
  EXPECT_FALSE(accepts(one, ""));
  EXPECT_FALSE(accepts(one, R"(text first <function=get_time>{"tz": "UTC"}</function>)"));
  EXPECT_TRUE(accepts(one, R"(<function=get_time>{"tz": "UTC"}</function>)"));
  EXPECT_TRUE(accepts(one, R"(<function=get_time>{"tz": "UTC"}</function> then text <function=get_time>{"tz": "A"}</function>)"));

  f = base;
  f["stop_after_first"] = true;
  auto first = tag({{"type", "structural_tag"}, {"format", f}});
  EXPECT_TRUE(accepts(first, "no call at all"));
  EXPECT_TRUE(accepts(first, R"(text <function=get_time>{"tz": "UTC"}</function>)"));
  EXPECT_FALSE(accepts(first, R"(text <function=get_time>{"tz": "UTC"}</function> more)"));

  f["at_least_one"] = true;
  auto exactly_one = tag({{"type", "structural_tag"}, {"format", f}});
  EXPECT_TRUE(accepts(exactly_one, R"(<function=get_weather>{"city": "Rome"}</function>)"));
  EXPECT_FALSE(accepts(exactly_one, ""));
  EXPECT_FALSE(accepts(exactly_one, R"(<function=get_weather>{"city": "Rome"}</function>x)"));

  f = base;
  f["excludes"] = {"<tool_call>"};
  auto ex = tag({{"type", "structural_tag"}, {"format", f}});
  EXPECT_TRUE(accepts(ex, "a <tool_cal"));
  EXPECT_FALSE(accepts(ex, "a <tool_call> b"));
}

TEST(StructuralTag, AnyTextInATagStopsAtItsEnd) {
  // The think example: any_text inside a tag ends at the tag's end; excluding the end itself is allowed.
  const ojson think = {{"type", "tag"}, {"begin", "<think>"},
                       {"content", {{"type", "any_text"}, {"excludes", {"</think>"}}}}, {"end", "</think>"}};
  const ojson seq = {{"type", "sequence"},
                     {"elements", {think, {{"type", "const_string"}, {"value", "Answer: "}},
                                   {{"type", "regex"}, {"pattern", "[0-9]+"}}}}};
  auto a = tag({{"type", "structural_tag"}, {"format", seq}});
  EXPECT_TRUE(accepts(a, "<think>2 + 2, carry </thin nothing</think>Answer: 4"));
  EXPECT_TRUE(accepts(a, "<think></think>Answer: 12"));
  EXPECT_FALSE(accepts(a, "<think>a</think>b</think>Answer: 4"));
  EXPECT_FALSE(accepts(a, "<think>a</think>Answer: four"));
  EXPECT_FALSE(accepts(a, "<think>a"));
  // Several end strings: any one closes the tag.
  const ojson two_ends = {{"type", "tag"}, {"begin", "<r>"}, {"content", {{"type", "any_text"}}}, {"end", {"</r>", "</a>"}}};
  auto b = tag({{"type", "structural_tag"}, {"format", two_ends}});
  EXPECT_TRUE(accepts(b, "<r>x</r>"));
  EXPECT_TRUE(accepts(b, "<r>x</a>"));
  EXPECT_FALSE(accepts(b, "<r>x</r>y"));
  // Non-ASCII triggers and ends work on whole characters.
  const ojson ds = {{"type", "triggered_tags"}, {"triggers", {"<｜tool▁call▁begin｜>"}},
                    {"tags", {{{"type", "tag"}, {"begin", "<｜tool▁call▁begin｜>f"},
                               {"content", {{"type", "json_schema"}, {"json_schema", kCitySchema}}},
                               {"end", "<｜tool▁call▁end｜>"}}}}};
  auto c = tag({{"type", "structural_tag"}, {"format", ds}});
  EXPECT_TRUE(accepts(c, "日本 <｜tool▁call▁begin｜>f{\"city\": \"東京\"}<｜tool▁call▁end｜> 語"));
  EXPECT_TRUE(accepts(c, "<｜tool▁call"));
  EXPECT_FALSE(accepts(c, "<｜tool▁call▁begin｜>g{}<｜tool▁call▁end｜>"));
}

TEST(StructuralTag, CompositionFormats) {
  const ojson yes_no = {{"type", "or"}, {"elements", {{{"type", "const_string"}, {"value", "yes"}},
                                                      {{"type", "const_string"}, {"value", "no"}}}}};
  const ojson items = {{"type", "tags_with_separator"},
                       {"tags", {{{"type", "tag"}, {"begin", "<item>"}, {"content", yes_no}, {"end", "</item>"}}}},
                       {"separator", ","}};
  auto list = tag({{"type", "structural_tag"}, {"format", items}});
  EXPECT_TRUE(accepts(list, ""));
  EXPECT_TRUE(accepts(list, "<item>yes</item>"));
  EXPECT_TRUE(accepts(list, "<item>yes</item>,<item>no</item>,<item>no</item>"));
  EXPECT_FALSE(accepts(list, "<item>yes</item>,"));
  EXPECT_FALSE(accepts(list, "<item>maybe</item>"));
  ojson once = items;
  once["stop_after_first"] = true;
  once["at_least_one"] = true;
  auto single = tag({{"type", "structural_tag"}, {"format", once}});
  EXPECT_FALSE(accepts(single, ""));
  EXPECT_TRUE(accepts(single, "<item>no</item>"));
  EXPECT_FALSE(accepts(single, "<item>no</item>,<item>no</item>"));

  const ojson rep = {{"type", "repeat"}, {"min", 2}, {"max", 3}, {"content", yes_no}};
  auto r = tag({{"type", "structural_tag"}, {"format", rep}});
  EXPECT_FALSE(accepts(r, "yes"));
  EXPECT_TRUE(accepts(r, "yesno"));
  EXPECT_TRUE(accepts(r, "nonoyes"));
  EXPECT_FALSE(accepts(r, "yesyesyesyes"));
  const ojson parts = {{"type", "sequence"},
                       {"elements", {{{"type", "optional"}, {"content", {{"type", "const_string"}, {"value", "-"}}}},
                                     {{"type", "plus"}, {"content", {{"type", "grammar"}, {"grammar", "root ::= [0-9]"}}}},
                                     {{"type", "star"}, {"content", {{"type", "const_string"}, {"value", "!"}}}}}}};
  auto p = tag({{"type", "structural_tag"}, {"format", parts}});
  for (const char* ok : {"1", "-12", "7!!", "-0!"}) EXPECT_TRUE(accepts(p, ok)) << ok;
  for (const char* bad : {"", "-", "!", "1-", "a"}) EXPECT_FALSE(accepts(p, bad)) << bad;
  // A tag nested in a triggered tag's content, itself holding triggered tags that stop at its end.
  const ojson inner = {{"type", "triggered_tags"}, {"triggers", {"@"}},
                       {"tags", {{{"type", "tag"}, {"begin", "@"}, {"content", {{"type", "regex"}, {"pattern", "[0-9]+"}}}, {"end", ";"}}}}};
  const ojson outer = {{"type", "triggered_tags"}, {"triggers", {"<n>"}},
                       {"tags", {{{"type", "tag"}, {"begin", "<n>"}, {"content", inner}, {"end", "</n>"}}}}};
  auto n = tag({{"type", "structural_tag"}, {"format", outer}});
  EXPECT_TRUE(accepts(n, "a @ <n>b @12; c</n> d"));
  EXPECT_FALSE(accepts(n, "<n>@x;</n>"));
  EXPECT_FALSE(accepts(n, "<n>@12</n>"));  // inside, the nested tag must close before the outer end
}

TEST(StructuralTag, RefusalsNameTheirPath) {
  auto refused = [](const ojson& format, const std::string& needle) {
    const std::string e = error_of({{"type", "structural_tag"}, {"format", format}});
    EXPECT_NE(e.find(needle), std::string::npos) << "error: '" << e << "', expected it to mention " << needle;
  };
  const ojson t = {{"type", "tag"}, {"begin", "<f>"}, {"content", {{"type", "any_text"}}}, {"end", "</f>"}};
  refused({{"type", "triggered_tags"}, {"triggers", {"<g"}}, {"tags", {t}}}, "format.tags[0].begin");
  ojson t2 = t;
  t2["begin"] = "x<f>";
  refused({{"type", "triggered_tags"}, {"triggers", {"<f", "x<f"}}, {"tags", {t, t2}}}, "contains");
  refused({{"type", "triggered_tags"}, {"triggers", {"<f", "<x"}}, {"tags", {t}}}, "begins no tag");
  refused({{"type", "sequence"}, {"elements", {{{"type", "any_text"}}, {{"type", "const_string"}, {"value", "x"}}}}},
          "format.elements[0]");
  refused({{"type", "token"}, {"token", "<eos>"}}, "'token' is not supported");
  refused({{"type", "dispatch"}}, "'dispatch' is not supported");
  refused({{"type", "nonsense"}}, "unknown format type 'nonsense'");
  refused({{"type", "json_schema"}, {"json_schema", kCitySchema}, {"style", "qwen_xml"}}, "format.style");
  refused({{"type", "json_schema"}, {"json_schema", kCitySchema}, {"any_order", true}}, "format.any_order");
  refused({{"type", "any_text"}, {"max_tokens", 5}}, "format.max_tokens");
  refused({{"type", "const_string"}, {"value", "x"}, {"extra", 1}}, "format.extra");
  refused({{"type", "regex"}, {"pattern", "(?=a)"}}, "format.pattern");
  refused({{"type", "json_schema"}, {"json_schema", {{"type", "string"}, {"pattern", "(a)\\1"}}}}, "format.json_schema");
  refused({{"type", "tag"}, {"begin", {{"type", "token"}}}, {"content", {{"type", "any_text"}}}, {"end", "x"}}, "format.begin");
  refused({{"type", "tag"}, {"begin", "a"}, {"content", {{"type", "any_text"}}}, {"end", ""}}, "empty");
  refused({{"type", "repeat"}, {"min", 3}, {"max", 2}, {"content", {{"type", "const_string"}, {"value", "x"}}}}, "format.max");
  EXPECT_NE(error_of(ojson::parse(R"({"structures": [{"begin": "<a>", "schema": {}, "end": "</a>"}], "triggers": ["<b"]})"))
                .find("structures[0].begin"),
            std::string::npos);
  EXPECT_NE(error_of({{"type", "json_schema"}}).find("must be \"structural_tag\""), std::string::npos);
  EXPECT_NE(error_of({{"type", "structural_tag"}}).find("needs 'format'"), std::string::npos);
  EXPECT_THROW(structural_tag_grammar("{not json"), Error);
}

// ---- triggered tags against a recognizer written from the definition ----

struct RefTag {
  std::string begin, content, end;  // content: an ECMAScript regex the whole content must match
};

struct RefSpec {
  std::vector<std::string> triggers, excludes;
  std::vector<RefTag> tags;
  bool at_least_one = false, stop_after_first = false;
};

// Does `s` from `pos` on read as a tag of `spec` opening exactly at `pos`, followed by `rest`?
bool ref_tag_at(const RefSpec& spec, const std::string& s, size_t pos, const std::function<bool(size_t)>& rest) {
  for (const auto& t : spec.tags) {
    if (s.compare(pos, t.begin.size(), t.begin) != 0) continue;
    const size_t c0 = pos + t.begin.size();
    const std::regex re(t.content);
    for (size_t c1 = c0; c1 + t.end.size() <= s.size(); ++c1)
      if (s.compare(c1, t.end.size(), t.end) == 0 && std::regex_match(s.substr(c0, c1 - c0), re) &&
          rest(c1 + t.end.size()))
        return true;
  }
  return false;
}

// Free text from `from`: the first trigger or exclude completed decides.
bool ref_free(const RefSpec& spec, const std::string& s, size_t from) {
  for (size_t e = from + 1; e <= s.size(); ++e) {
    for (const auto& x : spec.excludes)
      if (e >= from + x.size() && s.compare(e - x.size(), x.size(), x) == 0) return false;
    for (const auto& t : spec.triggers)
      if (e >= from + t.size() && s.compare(e - t.size(), t.size(), t) == 0)
        return ref_tag_at(spec, s, e - t.size(), [&](size_t next) {
          return spec.stop_after_first ? next == s.size() : ref_free(spec, s, next);
        });
  }
  return true;
}

bool ref_accepts(const RefSpec& spec, const std::string& s) {
  if (!spec.at_least_one) return ref_free(spec, s, 0);
  return ref_tag_at(spec, s, 0, [&](size_t next) {
    return spec.stop_after_first ? next == s.size() : ref_free(spec, s, next);
  });
}

ojson to_format(const RefSpec& r) {
  ojson tags = ojson::array();
  for (const auto& t : r.tags)
    tags.push_back({{"type", "tag"}, {"begin", t.begin}, {"content", {{"type", "regex"}, {"pattern", t.content}}}, {"end", t.end}});
  ojson f = {{"type", "triggered_tags"}, {"triggers", r.triggers}, {"tags", tags},
             {"at_least_one", r.at_least_one}, {"stop_after_first", r.stop_after_first}};
  if (!r.excludes.empty()) f["excludes"] = r.excludes;
  return {{"type", "structural_tag"}, {"format", f}};
}

TEST(StructuralTag, TriggeredTagsMatchTheReferenceRecognizer) {
  struct Case {
    RefSpec spec;
    std::vector<std::string> excludes;
    std::vector<std::string> pieces;  // random texts are strings of these
  };
  std::vector<Case> cases(2);
  // Contents that may hold trigger and end characters, a trigger shared by two tags whose begins
  // share a prefix, excludes overlapping a trigger.
  cases[0].spec.triggers = {"<a", "<b"};
  cases[0].spec.tags = {{"<a", "(ab)*", ">"}, {"<b", "x*", ">"}, {"<bb", "[ab<]", "x>"}};
  cases[0].excludes = {"xx", "x<"};
  cases[0].pieces = {"<a", "<b", "<bb", "ab", "x", ">", "x>", "a", "b", "<", "xx", "x<"};
  // Triggers whose partial matches overlap (after "aa", another "a" keeps two of "aab" matched), so
  // the automaton must fall back to the longest match still open rather than start over.
  cases[1].spec.triggers = {"aab", "ba<"};
  cases[1].spec.tags = {{"aab", "b*", ";"}, {"ba<", "a?", ">"}};
  cases[1].excludes = {"bb;"};
  cases[1].pieces = {"a", "b", "aa", "aab", "ba<", ";", ">", "<", "ab", "bb", "b;"};
  std::mt19937 rng(20261128);
  int checked = 0, accepted = 0;
  for (const auto& c : cases) {
    for (int variant = 0; variant < 8; ++variant) {
      RefSpec spec = c.spec;
      spec.at_least_one = variant & 1;
      spec.stop_after_first = variant & 2;
      if (variant & 4) spec.excludes = c.excludes;
      auto a = tag(to_format(spec));
      for (int n = 0; n < 1000; ++n) {
        std::string s;
        const int len = int(rng() % 8);
        for (int i = 0; i < len; ++i) s += c.pieces[rng() % c.pieces.size()];
        const bool want = ref_accepts(spec, s);
        ASSERT_EQ(accepts(a, s), want) << "triggers " << spec.triggers[0] << ", variant " << variant << " on '" << s << "'";
        ++checked;
        accepted += want;
      }
    }
  }
  // The sample must exercise both answers for the comparison to mean anything.
  EXPECT_GT(accepted, checked / 20);
  EXPECT_LT(accepted, checked - checked / 20);
}

}  // namespace
}  // namespace dpserve::constrain
