// Compilers and automaton, case by case, with expected answers taken from the JSON Schema, regex
// and GBNF definitions (not from our output): boundaries of ranges and lengths, escapes, property
// order, refused constructs named in the error, serialization round trips and corrupt buffers.
#include <functional>
#include <random>

#include <gtest/gtest.h>

#include "byte_matcher.h"
#include "constrain/compile_cache.h"
#include "constrain/constraint.h"
#include "constrain/gbnf_compiler.h"
#include "constrain/json_schema_compiler.h"
#include "constrain/matcher.h"
#include "constrain/matcher_registry.h"
#include "constrain/regex_compiler.h"
#include "constrain/tool_call_grammar.h"
#include "core/check.h"

namespace dpserve::constrain {
namespace {

using test::accepts;

std::shared_ptr<const Automaton> schema(const std::string& s) { return Automaton::build(json_schema_grammar(s)); }
std::shared_ptr<const Automaton> regex(const std::string& s) { return Automaton::build(regex_grammar(s)); }
std::shared_ptr<const Automaton> gbnf(const std::string& s) { return Automaton::build(gbnf_grammar(s)); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(JsonSchema, IntegerBoundsAreExact) {
  auto a = schema(R"({"type": "integer", "minimum": -12, "exclusiveMaximum": 105})");
  for (const char* ok : {"-12", "-1", "0", "7", "99", "104"}) EXPECT_TRUE(accepts(a, ok)) << ok;
  for (const char* bad : {"-13", "105", "1000", "-0", "007", "1.0", "5e1"}) EXPECT_FALSE(accepts(a, bad)) << bad;
  auto big = schema(R"({"type": "integer", "minimum": 1000, "maximum": 987654})");
  for (const char* ok : {"1000", "1999", "9999", "10000", "987654", "987599"}) EXPECT_TRUE(accepts(big, ok)) << ok;
  for (const char* bad : {"999", "987655", "988000", "1000000"}) EXPECT_FALSE(accepts(big, bad)) << bad;
  // Draft 4 form of the exclusive bound.
  auto d4 = schema(R"({"type": "integer", "minimum": 3, "exclusiveMinimum": true})");
  EXPECT_FALSE(accepts(d4, "3"));
  EXPECT_TRUE(accepts(d4, "4"));
}

// Each bound keyword applies on its own (JSON Schema 2020-12, 6.2): "minimum": 5 with "exclusiveMinimum": 5
// rejects 5, whichever keyword is read first, and likewise at the top.
TEST(JsonSchema, InclusiveAndExclusiveBoundAtTheSameValueIsExclusive) {
  auto lo = schema(R"({"type": "integer", "minimum": 5, "exclusiveMinimum": 5})");
  EXPECT_FALSE(accepts(lo, "5"));
  EXPECT_TRUE(accepts(lo, "6"));
  auto hi = schema(R"({"type": "integer", "maximum": 9, "exclusiveMaximum": 9})");
  EXPECT_FALSE(accepts(hi, "9"));
  EXPECT_TRUE(accepts(hi, "8"));
  auto num = schema(R"({"type": "number", "minimum": 0.5, "exclusiveMinimum": 0.5})");
  EXPECT_FALSE(accepts(num, "0.5"));
  EXPECT_TRUE(accepts(num, "0.51"));
}

// Bounds past the grammar's integer range (1e18) cannot be clamped inwards without admitting values
// outside them: {"minimum": 1e19} clamped to 1e18 accepted 1000000000000000000, below the minimum.
TEST(JsonSchema, IntegerBoundsPastTheClampAreRefusedNotLoosened) {
  EXPECT_NE(error_of([] { schema(R"({"type": "integer", "minimum": 1e19})"); }).find("not supported"),
            std::string::npos);
  EXPECT_NE(error_of([] { schema(R"({"type": "integer", "maximum": -1e19})"); }).find("not supported"),
            std::string::npos);
  // An upper bound past it is kept (as no bound: outputs have at most 16 digits, all below it).
  const auto a = schema(R"({"type": "integer", "maximum": 1e19})");
  EXPECT_TRUE(accepts(a, "9999999999999999"));
  EXPECT_TRUE(accepts(a, "-5"));
}

TEST(JsonSchema, NumberBoundsHold) {
  auto a = schema(R"({"type": "number", "minimum": -1.5, "maximum": 2.25})");
  for (const char* ok : {"-1", "0", "0.5", "1.999", "2", "-0.75"}) EXPECT_TRUE(accepts(a, ok)) << ok;
  for (const char* bad : {"-1.6", "-2", "3", "2.5", "1e1"}) EXPECT_FALSE(accepts(a, bad)) << bad;
  auto pos = schema(R"({"type": "number", "exclusiveMinimum": 0})");
  EXPECT_FALSE(accepts(pos, "0"));
  EXPECT_FALSE(accepts(pos, "-1"));
  EXPECT_TRUE(accepts(pos, "1.5"));
  auto any = schema(R"({"type": "number"})");
  for (const char* ok : {"0", "-0.5", "12.25e-3", "3E+2"}) EXPECT_TRUE(accepts(any, ok)) << ok;
  for (const char* bad : {"01", ".5", "1.", "+1", "1e", "NaN", "1e999"}) EXPECT_FALSE(accepts(any, bad)) << bad;
}

// Bounds with no integer between them still hold numbers (0.5 lies in (0, 1)): those are written, and
// nothing outside. Every expected value is the bound's meaning: in range or not, by the number's value.
TEST(JsonSchema, NumberBoundsWithNoIntegerBetweenThem) {
  auto open01 = schema(R"({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1})");
  for (const char* ok : {"0.5", "0.25", "0.0001", "0.9999", "0.50"}) EXPECT_TRUE(accepts(open01, ok)) << ok;
  // "0", "0.0", "1", "1.0": equal to an exclusive bound; "1.5" above; "-0.1" below.
  for (const char* bad : {"0", "0.0", "1", "1.0", "1.5", "-0.1", "-0.5"}) EXPECT_FALSE(accepts(open01, bad)) << bad;
  // The audit's case, a property.
  auto conf = schema(R"({"type": "object", "properties": {"confidence": {"type": "number", "exclusiveMinimum": 0,
                         "exclusiveMaximum": 1}}, "required": ["confidence"]})");
  EXPECT_TRUE(accepts(conf, R"({"confidence":0.5})"));
  EXPECT_FALSE(accepts(conf, R"({"confidence":1})"));
  EXPECT_FALSE(accepts(conf, R"({"confidence":0})"));
  // Inclusive bounds include themselves, in any spelling of the same value.
  auto tenths = schema(R"({"type": "number", "minimum": 0.1, "maximum": 0.2})");
  for (const char* ok : {"0.1", "0.10", "0.15", "0.1999", "0.2", "0.200"}) EXPECT_TRUE(accepts(tenths, ok)) << ok;
  for (const char* bad : {"0", "0.0999", "0.2001", "0.21", "1", "-0.15"}) EXPECT_FALSE(accepts(tenths, bad)) << bad;
  auto neg = schema(R"({"type": "number", "minimum": -0.5, "maximum": -0.25})");
  for (const char* ok : {"-0.5", "-0.4999", "-0.3", "-0.25"}) EXPECT_TRUE(accepts(neg, ok)) << ok;
  // "-0" is zero, above -0.25; "0.3" has the wrong sign.
  for (const char* bad : {"-0.5001", "-0.2499", "-1", "-0", "0.3"}) EXPECT_FALSE(accepts(neg, bad)) << bad;
  auto across = schema(R"({"type": "number", "exclusiveMinimum": -0.5, "exclusiveMaximum": 0.25})");
  for (const char* ok : {"-0.4999", "-0.1", "0", "0.0", "0.2499"}) EXPECT_TRUE(accepts(across, ok)) << ok;
  for (const char* bad : {"-0.5", "-0.50", "0.25", "-0.6", "0.3", "-1", "1"}) EXPECT_FALSE(accepts(across, bad)) << bad;
  // Exclusive bounds on a fraction's edge leave out the edge in every spelling.
  auto quarters = schema(R"({"type": "number", "exclusiveMinimum": 0.25, "exclusiveMaximum": 0.75})");
  for (const char* ok : {"0.2500001", "0.5", "0.7499"}) EXPECT_TRUE(accepts(quarters, ok)) << ok;
  for (const char* bad : {"0.25", "0.250", "0.75", "0.7500", "0.2499"}) EXPECT_FALSE(accepts(quarters, bad)) << bad;
  auto tiny = schema(R"({"type": "number", "minimum": 0.1234, "maximum": 0.1235})");
  for (const char* ok : {"0.1234", "0.12340", "0.12345", "0.1235"}) EXPECT_TRUE(accepts(tiny, ok)) << ok;
  for (const char* bad : {"0.1233", "0.12339", "0.12351", "0.1236", "0"}) EXPECT_FALSE(accepts(tiny, bad)) << bad;
  // Equal inclusive bounds hold one number.
  auto one = schema(R"({"type": "number", "minimum": 1, "maximum": 1})");
  EXPECT_TRUE(accepts(one, "1"));
  EXPECT_TRUE(accepts(one, "1.0"));
  EXPECT_FALSE(accepts(one, "1.01"));
  // Closer than 16 fraction digits can tell apart: 1e-20 is written out in full, 1e-16 is above 2e-20.
  auto small = schema(R"({"type": "number", "minimum": 1e-20, "maximum": 2e-20})");
  EXPECT_TRUE(accepts(small, "0.00000000000000000001"));
  EXPECT_FALSE(accepts(small, "0.0000000000000001"));
  EXPECT_FALSE(accepts(small, "0"));
}

// Validators read a number as the nearest double before comparing it: doubles in [1, 2) are 2^-52
// (2.2e-16) apart, so 1.9999999999999999 reads as 2 and fails exclusiveMaximum 2, while
// 1.9999999999999998 reads as 2 - 2^-52 and passes.
TEST(JsonSchema, NumberBoundsHoldForTheDoubleAValidatorReads) {
  auto a = schema(R"({"type": "number", "exclusiveMaximum": 2})");
  EXPECT_TRUE(accepts(a, "1.9999999999999998"));
  EXPECT_FALSE(accepts(a, "1.9999999999999999"));
  EXPECT_FALSE(accepts(a, "2"));
  // Below 1 they are 2^-53 (1.1e-16) apart: 16 nines read as 1 - 2^-53, below 1.
  auto b = schema(R"({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1})");
  EXPECT_TRUE(accepts(b, "0.9999999999999999"));
}

// Only bounds no number satisfies are refused, named.
TEST(JsonSchema, EmptyNumberBoundsAreRefused) {
  for (const char* s : {R"({"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 1})",
                        R"({"type": "number", "minimum": 1, "exclusiveMaximum": 1})",
                        R"({"type": "number", "minimum": 2, "maximum": 1})",
                        R"({"type": "number", "minimum": 0.5, "maximum": 0.5, "exclusiveMaximum": true})"})
    EXPECT_NE(error_of([&] { schema(s); }).find("no number lies within the bounds"), std::string::npos) << s;
  // 0.10000000000000002 is the double after 0.1: a decimal between them reads as one of the two, which
  // both bounds exclude.
  const char* adjacent = R"({"type": "number", "exclusiveMinimum": 0.1, "exclusiveMaximum": 0.10000000000000002})";
  EXPECT_NE(error_of([&] { schema(adjacent); }).find("adjacent doubles"), std::string::npos);
}

TEST(JsonSchema, StringLengthCountsCharactersNotBytes) {
  auto a = schema(R"({"type": "string", "minLength": 2, "maxLength": 3})");
  EXPECT_TRUE(accepts(a, R"("ab")"));
  EXPECT_TRUE(accepts(a, "\"日本語\""));          // 3 characters, 9 bytes
  EXPECT_TRUE(accepts(a, R"("\n\u00e9")"));        // escapes count one each
  EXPECT_FALSE(accepts(a, R"("a")"));
  EXPECT_FALSE(accepts(a, R"("abcd")"));
  EXPECT_FALSE(accepts(a, "\"a\nb\""));            // raw control characters are not JSON
  EXPECT_FALSE(accepts(a, R"("\ud83d\ude00")"));   // surrogate escapes: validators count a pair as one
  EXPECT_FALSE(accepts(a, "\"\xC3\""));            // invalid UTF-8
}

TEST(JsonSchema, PropertiesInOrderRequiredEnforcedExtrasRefused) {
  auto a = schema(R"({"type": "object", "properties": {"b": {"type": "integer"}, "a": {"type": "boolean"}},
                      "required": ["a"], "additionalProperties": false})");
  EXPECT_TRUE(accepts(a, R"({"a":true})"));
  EXPECT_TRUE(accepts(a, R"({"b":1,"a":false})"));
  EXPECT_TRUE(accepts(a, "{ \"b\" : 1 ,\n  \"a\": true }"));
  EXPECT_FALSE(accepts(a, R"({"b":1})"));             // a is required
  EXPECT_FALSE(accepts(a, R"({"a":true,"b":1})"));    // schema order
  EXPECT_FALSE(accepts(a, R"({"a":true,"c":1})"));    // no extras
  EXPECT_FALSE(accepts(a, R"({"b":1,,"a":true})"));
  EXPECT_FALSE(accepts(a, " {\"a\":true}"));            // nothing before the value
  EXPECT_FALSE(accepts(a, "{\"a\":true} "));            // nor after
  // Default whitespace: one space, or a newline and up to 16 spaces of indentation.
  EXPECT_TRUE(accepts(a, "{\n" + std::string(16, ' ') + "\"a\":true\n}"));
  EXPECT_FALSE(accepts(a, "{\n" + std::string(17, ' ') + "\"a\":true}"));
  EXPECT_FALSE(accepts(a, "{  \"a\":true}"));
  EXPECT_FALSE(accepts(a, "{\t\"a\":true}"));
  EXPECT_FALSE(accepts(a, "{\r\"a\":true}"));
}

TEST(JsonSchema, WhitespacePolicy) {
  const char* s = R"({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})";
  JsonSchemaOptions compact;
  compact.whitespace = "";
  auto c = Automaton::build(json_schema_grammar(s, compact));
  EXPECT_TRUE(accepts(c, R"({"a":1})"));
  EXPECT_FALSE(accepts(c, R"({"a": 1})"));
  JsonSchemaOptions one_space;
  one_space.whitespace = "[ ]?";
  auto o = Automaton::build(json_schema_grammar(s, one_space));
  EXPECT_TRUE(accepts(o, R"({ "a": 1 })"));
  EXPECT_FALSE(accepts(o, R"({"a":  1})"));
  JsonSchemaOptions bad;
  bad.whitespace = "[ x]*";
  EXPECT_NE(error_of([&] { json_schema_grammar(s, bad); }).find("matches more than spaces"), std::string::npos);
}

TEST(JsonSchema, AdditionalPropertiesNeverShadowDeclaredOnes) {
  auto a = schema(R"({"type": "object", "properties": {"id": {"type": "integer"}},
                      "additionalProperties": {"type": "string"}})");
  EXPECT_TRUE(accepts(a, R"({"id":1,"name":"x"})"));
  EXPECT_TRUE(accepts(a, R"({"i":"x","idx":"y"})"));
  EXPECT_FALSE(accepts(a, R"({"id":1,"id":"x"})"));  // a duplicate would take the extras' schema
  EXPECT_FALSE(accepts(a, R"({"name":1})"));
}

TEST(JsonSchema, EnumConstAndTypeUnions) {
  auto a = schema(R"({"enum": ["a\"b", 1.5, null, {"k": [1]}]})");
  for (const char* ok : {R"("a\"b")", "1.5", "null", R"({"k":[1]})"}) EXPECT_TRUE(accepts(a, ok)) << ok;
  EXPECT_FALSE(accepts(a, R"("ab")"));
  auto u = schema(R"({"type": ["string", "null"], "maxLength": 1})");
  EXPECT_TRUE(accepts(u, "null"));
  EXPECT_TRUE(accepts(u, R"("x")"));
  EXPECT_FALSE(accepts(u, R"("xy")"));
}

TEST(JsonSchema, ArraysCountItems) {
  auto a = schema(R"({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}],
                      "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3})");
  for (const char* ok : {"[1]", R"([1,"a"])", R"([1,"a",true])"}) EXPECT_TRUE(accepts(a, ok)) << ok;
  for (const char* bad : {"[]", R"(["a"])", R"([1,"a",true,false])", "[1,true]"}) EXPECT_FALSE(accepts(a, bad)) << bad;
}

TEST(JsonSchema, RecursiveRefsAndOneOfDiscriminators) {
  auto a = schema(R"({"$defs": {"t": {"type": "object", "properties": {"k": {"type": "array", "items": {"$ref": "#/$defs/t"}}}}},
                      "$ref": "#/$defs/t"})");
  EXPECT_TRUE(accepts(a, R"({"k":[{"k":[{}]},{}]})"));
  EXPECT_FALSE(accepts(a, R"({"k":[1]})"));
  auto o = schema(R"({"oneOf": [{"type": "object", "properties": {"t": {"const": "a"}}, "required": ["t"]},
                                {"type": "object", "properties": {"t": {"const": "b"}, "x": {"type": "integer"}}, "required": ["t"]}]})");
  EXPECT_TRUE(accepts(o, R"({"t":"b","x":2})"));
  EXPECT_FALSE(accepts(o, R"({"t":"c"})"));
}

// JSON Schema applies every keyword of a schema: a string under 'pattern' and 'format' (as zod v4
// writes z.email(), z.uuid(), z.iso.datetime()) or under a length and a pattern must satisfy each.
TEST(JsonSchema, PatternFormatAndLengthAllHold) {
  // Letters by the pattern, an email by the format: "a@b.co" is both, "a1@b.co" an email with a
  // digit, "abc" and "a@b" (no dot after the @) letters but no email.
  auto e = schema(R"({"type": "string", "format": "email", "pattern": "^[a-z@.]+$"})");
  EXPECT_TRUE(accepts(e, R"("a@b.co")"));
  for (const char* bad : {R"("a1@b.co")", R"("abc")", R"("a@b")", R"("")"}) EXPECT_FALSE(accepts(e, bad)) << bad;
  // zod's own email pattern beside the format.
  auto z = schema(R"({"type": "string", "format": "email",
      "pattern": "^(?:[A-Za-z0-9_'+\\-]+\\.)*[A-Za-z0-9_'+\\-]*[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9\\-]*\\.)+[A-Za-z]{2,}$"})");
  EXPECT_TRUE(accepts(z, R"("ann.lee@example.com")"));
  EXPECT_FALSE(accepts(z, R"("ann@example.c0")"));  // the pattern wants a letter TLD
  EXPECT_FALSE(accepts(z, R"("ann@@example.com")"));
  EXPECT_FALSE(accepts(z, R"("Ann@example.com")"));  // the format (as we enforce it) is lowercase
  // Unanchored pattern (matches anywhere) and a date.
  auto d = schema(R"({"type": "string", "format": "date", "pattern": "-12-"})");
  EXPECT_TRUE(accepts(d, R"("2024-12-31")"));
  EXPECT_FALSE(accepts(d, R"("2024-11-30")"));
  EXPECT_FALSE(accepts(d, R"("2024-12-32")"));
  // Length with a pattern: 2..4 characters of [ab].
  auto l = schema(R"({"type": "string", "pattern": "^[ab]+$", "minLength": 2, "maxLength": 4})");
  for (const char* ok : {R"("ab")", R"("abba")"}) EXPECT_TRUE(accepts(l, ok)) << ok;
  for (const char* bad : {R"("a")", R"("ababa")", R"("abc")"}) EXPECT_FALSE(accepts(l, bad)) << bad;
  // Length with a format: a uuid is 36 characters, so maxLength 35 leaves none.
  auto u = schema(R"({"type": "string", "format": "uuid", "maxLength": 36})");
  EXPECT_TRUE(accepts(u, R"("123e4567-e89b-12d3-a456-426614174000")"));
  EXPECT_NE(error_of([] { schema(R"({"type": "string", "format": "uuid", "maxLength": 35})"); })
                .find("format 'uuid' and 'minLength' / 'maxLength': no string matches all of them (at #)"),
            std::string::npos);
  EXPECT_NE(error_of([] { schema(R"({"type": "string", "format": "date", "pattern": "^x"})"); })
                .find("'pattern' and format 'date': no string matches all of them"),
            std::string::npos);
  // zod's z.string().startsWith("ab"): the format's text is only in the pattern, so the pattern
  // enforces it; without a pattern the format says nothing we could check.
  auto sw = schema(R"({"type": "string", "format": "starts_with", "pattern": "^ab.*"})");
  EXPECT_TRUE(accepts(sw, R"("abc")"));
  EXPECT_FALSE(accepts(sw, R"("xab")"));
  EXPECT_NE(error_of([] { schema(R"({"type": "string", "format": "starts_with"})"); })
                .find("format 'starts_with' without a 'pattern'"),
            std::string::npos);
}

// Object keys are strings: propertyNames {"type": "string"} (zod's z.record(z.string(), v)) holds of
// every object; with no additionalProperties (none allowed here) any propertyNames holds of {}.
TEST(JsonSchema, PropertyNamesOfTypeString) {
  auto r = schema(R"({"type": "object", "propertyNames": {"type": "string"}, "additionalProperties": {"type": "integer"}})");
  EXPECT_TRUE(accepts(r, R"({"a":1,"b":2})"));
  EXPECT_TRUE(accepts(r, "{}"));
  EXPECT_FALSE(accepts(r, R"({"a":"x"})"));
  auto none = schema(R"({"type": "object", "propertyNames": {"maxLength": 2}})");
  EXPECT_TRUE(accepts(none, "{}"));
  EXPECT_FALSE(accepts(none, R"({"abc":1})"));
  EXPECT_NE(error_of([] { schema(R"({"type": "object", "propertyNames": {"minimum": 2}})"); })
                .find("'minimum' in 'propertyNames'"),
            std::string::npos);
}

TEST(JsonSchema, RefusalsNameTheConstruct) {
  EXPECT_NE(error_of([] { schema(R"({"type": "object", "properties": {"x": {"not": {}}}})"); })
                .find("'not' is not supported (at #/properties/x)"),
            std::string::npos);
  EXPECT_NE(error_of([] { schema(R"({"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 3}]})"); }).find("oneOf"),
            std::string::npos);
  EXPECT_NE(error_of([] { schema(R"({"type": "string", "format": "jwt"})"); }).find("format 'jwt'"), std::string::npos);
  EXPECT_NE(error_of([] { schema("{not json"); }).find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of([] { schema(R"({"type": "strin"})"); }).find("unknown type 'strin'"), std::string::npos);
  EXPECT_NE(error_of([] { schema(R"({"$ref": "#/$defs/missing"})"); }).find("does not resolve"), std::string::npos);
}

// multipleOf k (a positive integer): the integers n with n mod k = 0 (JSON Schema 2020-12 6.2.1),
// within the bounds and within 2^53 - 1, where validators' doubles still hold n exactly.
TEST(JsonSchema, MultipleOfIntegers) {
  auto a = schema(R"({"type": "integer", "multipleOf": 5, "minimum": -12, "maximum": 23})");
  for (const char* ok : {"-10", "-5", "0", "5", "10", "15", "20"}) EXPECT_TRUE(accepts(a, ok)) << ok;
  for (const char* bad : {"-15", "25", "3", "7", "-12", "23", "-0", "5.0", "05"}) EXPECT_FALSE(accepts(a, bad)) << bad;
  // "number" with an integer step is the same; unbounded, the largest multiple of 3 below 2^53 is
  // 9007199254740990 (digit sum 75), and 9007199254740993 (also a multiple) is past 2^53.
  auto n = schema(R"({"type": "number", "multipleOf": 3})");
  for (const char* ok : {"12", "-3", "0", "9007199254740990"}) EXPECT_TRUE(accepts(n, ok)) << ok;
  for (const char* bad : {"13", "1.5", "9007199254740993", "3e1"}) EXPECT_FALSE(accepts(n, bad)) << bad;
  auto big = schema(R"({"type": "integer", "multipleOf": 97, "minimum": 1000, "maximum": 100000})");
  EXPECT_TRUE(accepts(big, "1067"));  // 11 * 97
  EXPECT_TRUE(accepts(big, "99910"));  // 1030 * 97
  for (const char* bad : {"970", "1068", "100067"}) EXPECT_FALSE(accepts(big, bad)) << bad;
  // A large step over all integers needs more states than the caps allow: refused, quickly.
  EXPECT_NE(error_of([] { schema(R"({"type": "integer", "multipleOf": 500})"); }).find("'multipleOf' 500: "),
            std::string::npos);
  EXPECT_NE(error_of([] { schema(R"({"type": "integer", "multipleOf": 97})"); }).find("too large"), std::string::npos);
  // Beside an enum, only the values that are multiples (other types are not numbers: it does not apply).
  auto e = schema(R"({"enum": [3, 5, 7.5, "x"], "multipleOf": 5})");
  for (const char* ok : {"5", R"("x")"}) EXPECT_TRUE(accepts(e, ok)) << ok;
  for (const char* bad : {"3", "7.5"}) EXPECT_FALSE(accepts(e, bad)) << bad;
  EXPECT_NE(error_of([] { schema(R"({"type": "integer", "multipleOf": 7, "minimum": 1, "maximum": 6})"); })
                .find("no multiple of 7"),
            std::string::npos);
  EXPECT_NE(error_of([] { schema(R"({"type": "number", "multipleOf": 0.01})"); })
                .find("'multipleOf' other than a positive integer"),
            std::string::npos);
}

// propertyNames with an enum (zod's z.record(z.enum(["a", "b"]), v), which also lists them as
// required; z.partialRecord does not) or a pattern (z.record(z.string().regex(...), v)): every key
// is one of them / matches it.
TEST(JsonSchema, PropertyNamesEnumAndPattern) {
  auto rec = schema(R"({"type": "object", "propertyNames": {"type": "string", "enum": ["a", "b"]},
      "additionalProperties": {"type": "number"}, "required": ["a", "b"]})");
  EXPECT_TRUE(accepts(rec, R"({"a":1,"b":2})"));
  for (const char* bad : {R"({"a":1})", R"({"a":1,"b":2,"c":3})", R"({"a":1,"a":2})", R"({"a":"x","b":2})"})
    EXPECT_FALSE(accepts(rec, bad)) << bad;
  auto part = schema(R"({"type": "object", "propertyNames": {"type": "string", "enum": ["a", "b"]},
      "additionalProperties": {"type": "number"}})");
  for (const char* ok : {"{}", R"({"b":1})", R"({"a":1,"b":2})"}) EXPECT_TRUE(accepts(part, ok)) << ok;
  for (const char* bad : {R"({"c":1})", R"({"ab":1})"}) EXPECT_FALSE(accepts(part, bad)) << bad;
  auto pat = schema(R"({"type": "object", "propertyNames": {"type": "string", "pattern": "^k[0-9]+$"},
      "additionalProperties": {"type": "number"}})");
  for (const char* ok : {"{}", R"({"k1":1,"k22":2})"}) EXPECT_TRUE(accepts(pat, ok)) << ok;
  for (const char* bad : {R"({"k":1})", R"({"x1":1})", R"({"k1x":1})"}) EXPECT_FALSE(accepts(pat, bad)) << bad;
  EXPECT_NE(error_of([] {
              schema(R"({"type": "object", "properties": {"c": {}}, "required": ["c"], "propertyNames": {"enum": ["a"]}})");
            }).find("required property 'c' is not allowed by 'propertyNames'"),
            std::string::npos);
}

// The key the allOf merge uses for extra patterns is the server's: a client schema naming it is refused, not
// enforced as a merge result (every other x- keyword is an annotation).
TEST(JsonSchema, MergedPatternsKeyIsReserved) {
  EXPECT_NE(error_of([] { schema(R"({"type": "string", "x-dpserve-patterns": ["^a"]})"); }).find("reserved"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              schema(R"({"type": "object", "properties": {"s": {"type": "string", "x-dpserve-patterns": ["b"]}}})");
            }).find("reserved"),
            std::string::npos);
  auto other = schema(R"({"type": "string", "x-note": ["^a"]})");  // an annotation: any string
  EXPECT_TRUE(accepts(other, R"("zzz")"));
  auto merged = schema(R"({"type": "string", "allOf": [{"pattern": "^a"}, {"pattern": "b$"}]})");
  EXPECT_TRUE(accepts(merged, R"("ab")"));
  EXPECT_FALSE(accepts(merged, R"("ba")"));
}

// Formats zod v4 writes (each with zod's own pattern beside it, or none): what they mean is zod's
// regex for them (zod's regexes.ts) and, for ipv6, RFC 4291's text forms.
TEST(JsonSchema, ZodFormats) {
  auto check = [](const char* format, std::vector<const char*> ok, std::vector<const char*> bad) {
    auto a = schema(std::string(R"({"type": "string", "format": ")") + format + "\"}");
    for (const char* s : ok) EXPECT_TRUE(accepts(a, std::string("\"") + s + "\"")) << format << " " << s;
    for (const char* s : bad) EXPECT_FALSE(accepts(a, std::string("\"") + s + "\"")) << format << " " << s;
  };
  check("ipv6", {"::1", "::", "2001:db8::8a2e:370:7334", "1:2:3:4:5:6:7:8", "fe80::"},
        {"1:2:3:4:5:6:7:8:9", "::g", "1.2.3.4", "2001:db8:::1", "12345::"});
  check("ulid", {"01ARZ3NDEKTSV4RRFFQ69G5FAV"}, {"01ARZ3NDEKTSV4RRFFQ69G5FAI", "81ARZ3NDEKTSV4RRFFQ69G5FAV", "01ARZ"});
  check("e164", {"+14155552671", "+4930123456"}, {"14155552671", "+0123456789", "+12345"});
  check("base64", {"", "YWJj", "YWI=", "YQ=="}, {"YWJ", "YQ=", "YW==x", "Y==="});
  check("base64url", {"", "YWJj", "YW", "a-_b"}, {"YWJjY", "a+b/", "YQ=="});
  check("cuid", {"cjld2cjxh0000qzrmn831i7rn", "C123456"}, {"xjld2cj", "c12345", "cABCDEFG"});
  check("cuid2", {"tz4a98xxat96iws9zmbrgj3a"}, {"", "Tz4a"});
  check("nanoid", {"V1StGXR8_Z5jdHi6B-myT"}, {"V1StGXR8_Z5jdHi6B-my", "V1StGXR8_Z5jdHi6B-myT!"});
  check("cidrv4", {"192.168.0.0/24", "0.0.0.0/0"}, {"192.168.0.0/33", "256.0.0.0/8", "10.0.0.0"});
  check("cidrv6", {"2001:db8::/32"}, {"2001:db8::/129", "2001:db8::"});
  check("lowercase", {"abc d-1", "", "é"}, {"aBc"});
  check("uppercase", {"ABC D-1"}, {"ABc"});
  check("hex", {"", "0aF9"}, {"0x1"});
  // zod's hostname and duration patterns use lookaheads: the format alone (a subset of each) holds.
  auto h = schema(R"({"type": "string", "format": "hostname",
      "pattern": "^(?=.{1,253}\\.?$)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[-0-9a-zA-Z]{0,61}[0-9a-zA-Z])?)*\\.?$"})");
  EXPECT_TRUE(accepts(h, R"("example.com")"));
  EXPECT_FALSE(accepts(h, R"("-example.com")"));
  auto d = schema(R"({"type": "string", "format": "duration",
      "pattern": "^P(?:(\\d+W)|(?!.*W)(?=\\d|T\\d)(\\d+Y)?(\\d+M)?(\\d+D)?(T(?=\\d)(\\d+H)?(\\d+M)?(\\d+([.,]\\d+)?S)?)?)$"})");
  EXPECT_TRUE(accepts(d, R"("P3D")"));
  EXPECT_TRUE(accepts(d, R"("PT12H")"));
  EXPECT_FALSE(accepts(d, R"("P")"));
  // A lookahead pattern beside another format (or none) is still refused.
  EXPECT_NE(error_of([] { schema(R"({"type": "string", "format": "email", "pattern": "^(?=a).*$"})"); })
                .find("lookaround"),
            std::string::npos);
  EXPECT_NE(error_of([] { schema(R"({"type": "string", "format": "emoji"})"); }).find("format 'emoji'"),
            std::string::npos);
}

TEST(JsonSchema, LargeUpperBoundsBecomeStricterNotLooser) {
  auto a = schema(R"({"type": "string", "maxLength": 100000})");
  EXPECT_TRUE(accepts(a, "\"" + std::string(1024, 'x') + "\""));
  EXPECT_FALSE(accepts(a, "\"" + std::string(1025, 'x') + "\""));
}

TEST(Regex, FullMatchAndDialectSubset) {
  auto a = regex(R"(\d{2,3}-[^\s\d]+)");
  EXPECT_TRUE(accepts(a, "12-ab"));
  EXPECT_TRUE(accepts(a, "123-_!"));
  EXPECT_FALSE(accepts(a, "1-ab"));
  EXPECT_FALSE(accepts(a, "12-a b"));
  EXPECT_FALSE(accepts(a, "12-\x1d"));  // Python's \s takes the separators \x1c-\x1f
  EXPECT_FALSE(accepts(a, "12-é"));     // négated shorthand classes stay within ASCII
  auto dot = regex("a.c");
  EXPECT_TRUE(accepts(dot, "a日c"));
  EXPECT_FALSE(accepts(dot, "a\nc"));
  EXPECT_FALSE(accepts(dot, "a\u2028c"));
  EXPECT_TRUE(accepts(regex("^(ab|c)*$"), "abcab"));
  EXPECT_TRUE(accepts(regex("x{,2}"), ""));
  EXPECT_TRUE(accepts(regex("a{"), "a{"));  // not a quantifier: a literal brace
}

TEST(Regex, RefusalsNameTheConstruct) {
  for (auto [p, needle] : std::vector<std::pair<const char*, const char*>>{
           {"(a)\\1", "backreferences"}, {"(?=x)", "lookaround"}, {"\\bx", "word boundaries"},
           {"(?i)x", "inline flags"}, {"a^b", "'^'"}, {"[", "unterminated character class"}, {"x**", "multiple repeat"}}) {
    const char* pattern = p;  // clang 14 cannot capture a structured binding
    EXPECT_NE(error_of([pattern] { regex(pattern); }).find(needle), std::string::npos) << p;
  }
}

// Nested bounded repetitions multiply: ((a{1,n}){1,n}){1,n} accepts a{1,n^3}, but the subset
// construction holds, for each count read so far, every way of splitting it between the three
// levels. Any client may send one (regex, ebnf, a schema's pattern), so the build's whole work is
// capped: at n = 30 the uncapped build held 3.4 GB for 23 s before it answered. Refused with a
// message naming the size; the same shape at n = 10 (a{1,1000}) still compiles and matches.
TEST(Automaton, NestedRepetitionsAreRefusedNotExpandedWithoutBound) {
  for (const std::string n : {"30", "100", "4096"}) {
    const std::string r = "((a{1," + n + "}){1," + n + "}){1," + n + "}";
    EXPECT_NE(error_of([&] { regex(r); }).find("too large to compile"), std::string::npos) << r;
  }
  EXPECT_NE(error_of([] { gbnf("root ::= ((\"a\"{1,30}){1,30}){1,30}\n"); }).find("too large to compile"),
            std::string::npos);
  EXPECT_NE(error_of([] { schema(R"({"type": "string", "pattern": "^((a{1,30}){1,30}){1,30}$"})"); })
                .find("too large to compile"),
            std::string::npos);
  const auto a = regex("((a{1,10}){1,10}){1,10}");
  EXPECT_TRUE(accepts(a, std::string(1000, 'a')));
  EXPECT_FALSE(accepts(a, std::string(1001, 'a')));
  EXPECT_FALSE(accepts(a, ""));
}

TEST(Gbnf, SyntaxAndErrors) {
  auto a = gbnf(R"(
# a comment
root ::= greeting " " name   # trailing comment
greeting ::= "hi" | "hello"
name ::= [A-Z] [a-z]{1,5} ("\x21")?
)");
  EXPECT_TRUE(accepts(a, "hi Bob"));
  EXPECT_TRUE(accepts(a, "hello Alicia!"));
  EXPECT_FALSE(accepts(a, "hey Bob"));
  EXPECT_NE(error_of([] { gbnf("root ::= x"); }).find("rule 'x' is used but never defined"), std::string::npos);
  EXPECT_NE(error_of([] { gbnf("start ::= \"a\""); }).find("no rule named 'root'"), std::string::npos);
  EXPECT_NE(error_of([] { gbnf("root ::= root \"a\" | \"b\""); }).find("left-recursive"), std::string::npos);
  EXPECT_NE(error_of([] { gbnf("root ::= \"a\"\nroot ::= \"b\""); }).find("defined twice"), std::string::npos);
  EXPECT_NE(error_of([] { gbnf("root ::= \"a\" (\"b\""); }).find("line 1"), std::string::npos);
  EXPECT_NE(error_of([] { gbnf("root ::= x\nx ::= \"a\" x"); }).find("can never be satisfied"), std::string::npos);
}

ToolCallSpec weather_tools(ToolCallFormat f) {
  ToolCallSpec s;
  s.format = f;
  s.tools.push_back({"get_weather", nlohmann::ordered_json::parse(
                                        R"({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})")});
  s.tools.push_back({"get_time", nlohmann::ordered_json::parse(R"({"type": "object", "properties": {}})")});
  return s;
}

TEST(ToolCalls, HermesFormat) {
  ToolCallSpec s = weather_tools(ToolCallFormat::kHermes);
  auto a = Automaton::build(tool_call_grammar(s));
  const std::string call = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
  const std::string time = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
  EXPECT_TRUE(accepts(a, call));
  EXPECT_TRUE(accepts(a, call + "\n" + time));  // parallel calls
  EXPECT_FALSE(accepts(a, ""));                  // required: at least one
  EXPECT_FALSE(accepts(a, "Sure! " + call));
  EXPECT_FALSE(accepts(a, "<tool_call>\n{\"name\": \"get_news\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_FALSE(accepts(a, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>"));
  s.only = "get_time";
  auto named = Automaton::build(tool_call_grammar(s));
  EXPECT_TRUE(accepts(named, time));
  EXPECT_FALSE(accepts(named, call));
  EXPECT_FALSE(accepts(named, time + "\n" + time));  // a named function: one call
  s.only.reset();
  s.parallel = false;
  EXPECT_FALSE(accepts(Automaton::build(tool_call_grammar(s)), call + "\n" + time));
  s.only = "nope";
  EXPECT_NE(error_of([&] { tool_call_grammar(s); }).find("'nope'"), std::string::npos);
  EXPECT_EQ(ToolCallSpec::from_text(s.to_text()).to_text(), s.to_text());
}

// DeepSeek-V3's calls as its chat template writes an assistant's tool_calls (and SGLang's deepseekv3
// detector reads them); V3.1's as SGLang's deepseekv31 detector documents them.
TEST(ToolCalls, DeepSeekFormats) {
  const std::string begin = "<｜tool▁calls▁begin｜>", end = "<｜tool▁calls▁end｜>";
  auto v3 = [](const std::string& name, const std::string& args) {
    return "<｜tool▁call▁begin｜>function<｜tool▁sep｜>" + name + "\n```json\n" + args + "\n```<｜tool▁call▁end｜>";
  };
  ToolCallSpec s = weather_tools(ToolCallFormat::kDeepSeekV3);
  auto a = Automaton::build(tool_call_grammar(s));
  const std::string paris = v3("get_weather", R"({"city": "Paris"})"), time = v3("get_time", "{}");
  EXPECT_TRUE(accepts(a, begin + paris + end));
  EXPECT_TRUE(accepts(a, begin + paris + "\n" + time + end));  // parallel calls, a newline apart
  EXPECT_FALSE(accepts(a, begin + paris));                      // the section must close
  EXPECT_FALSE(accepts(a, begin + end));                        // required: at least one
  EXPECT_FALSE(accepts(a, paris));
  EXPECT_FALSE(accepts(a, begin + v3("get_weather", "{}") + end));  // city is required
  EXPECT_FALSE(accepts(a, begin + v3("get_news", "{}") + end));
  s.only = "get_time";
  auto named = Automaton::build(tool_call_grammar(s));
  EXPECT_TRUE(accepts(named, begin + time + end));
  EXPECT_FALSE(accepts(named, begin + time + "\n" + time + end));
  EXPECT_EQ(ToolCallSpec::from_text(s.to_text()).to_text(), s.to_text());
  EXPECT_EQ(ToolCallSpec::from_text(s.to_text()).format, ToolCallFormat::kDeepSeekV3);

  auto v31 = [](const std::string& name, const std::string& args) {
    return "<｜tool▁call▁begin｜>" + name + "<｜tool▁sep｜>" + args + "<｜tool▁call▁end｜>";
  };
  s = weather_tools(ToolCallFormat::kDeepSeekV31);
  auto b = Automaton::build(tool_call_grammar(s));
  EXPECT_TRUE(accepts(b, begin + v31("get_weather", R"({"city": "Tokyo"})") + v31("get_time", "{}") + end));
  EXPECT_FALSE(accepts(b, begin + v3("get_time", "{}") + end));
  EXPECT_FALSE(accepts(a, begin + v31("get_time", "{}") + end));
  s.parallel = false;
  EXPECT_FALSE(accepts(Automaton::build(tool_call_grammar(s)), begin + v31("get_time", "{}") + v31("get_time", "{}") + end));
  EXPECT_EQ(ToolCallSpec::from_text(s.to_text()).format, ToolCallFormat::kDeepSeekV31);
}

// Mistral: as SGLang's mistral detector documents and its EBNF writes it.
TEST(ToolCalls, MistralFormat) {
  ToolCallSpec s = weather_tools(ToolCallFormat::kMistral);
  auto a = Automaton::build(tool_call_grammar(s));
  const std::string oslo = R"({"name": "get_weather", "arguments": {"city": "Oslo"}})";
  const std::string time = R"({"name": "get_time", "arguments": {}})";
  EXPECT_TRUE(accepts(a, "[TOOL_CALLS] [" + oslo + "]"));
  EXPECT_TRUE(accepts(a, "[TOOL_CALLS] [" + oslo + ", " + time + "]"));
  EXPECT_FALSE(accepts(a, "[TOOL_CALLS] []"));
  EXPECT_FALSE(accepts(a, oslo));
  EXPECT_FALSE(accepts(a, R"([TOOL_CALLS] [{"name": "get_weather", "parameters": {"city": "Oslo"}}])"));
  s.parallel = false;
  EXPECT_FALSE(accepts(Automaton::build(tool_call_grammar(s)), "[TOOL_CALLS] [" + oslo + ", " + time + "]"));
  EXPECT_EQ(ToolCallSpec::from_text(s.to_text()).format, ToolCallFormat::kMistral);
}

// Mistral from tokenizer v11 on: each call after its own [TOOL_CALLS], its name, [ARGS], then the
// arguments object (as vLLM's mistral parser reads "[TOOL_CALLS]add[ARGS]{...}[TOOL_CALLS]multiply[ARGS]{...}").
TEST(ToolCalls, MistralV11Format) {
  ToolCallSpec s = weather_tools(ToolCallFormat::kMistralV11);
  auto a = Automaton::build(tool_call_grammar(s));
  EXPECT_TRUE(accepts(a, R"([TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"})"));
  EXPECT_TRUE(accepts(a, R"([TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}[TOOL_CALLS]get_time[ARGS]{})"));
  EXPECT_FALSE(accepts(a, R"([TOOL_CALLS]get_weather{"city": "Oslo"})"));
  EXPECT_FALSE(accepts(a, R"([TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Oslo"}}])"));
  EXPECT_FALSE(accepts(a, R"([TOOL_CALLS]get_date[ARGS]{})"));
  EXPECT_FALSE(accepts(a, "[TOOL_CALLS]get_weather[ARGS]{\"city\": 3}"));
  s.parallel = false;
  EXPECT_FALSE(accepts(Automaton::build(tool_call_grammar(s)),
                       R"([TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}[TOOL_CALLS]get_time[ARGS]{})"));
  EXPECT_EQ(ToolCallSpec::from_text(s.to_text()).format, ToolCallFormat::kMistralV11);
}

// Qwen3-Coder: calls as its chat template writes them and SGLang's qwen3_coder detector reads them
// (<tool_call>\n<function=NAME>\n, each parameter as <parameter=KEY>\nVALUE\n</parameter>\n, then
// </function>\n</tool_call>); a string parameter's value is raw text, any other is JSON by its schema.
TEST(ToolCalls, Qwen3CoderFormat) {
  ToolCallSpec s;
  s.format = ToolCallFormat::kQwen3Coder;
  s.tools.push_back({"get_weather", nlohmann::ordered_json::parse(R"({"type": "object", "properties": {
      "city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7},
      "unit": {"enum": ["celsius", "fahrenheit"]}, "code": {"type": "string", "maxLength": 4},
      "where": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]}},
      "required": ["city", "days"]})")});
  s.tools.push_back({"get_time", nlohmann::ordered_json::parse(R"({"type": "object", "properties": {}})")});
  auto a = Automaton::build(tool_call_grammar(s));
  auto param = [](const std::string& k, const std::string& v) { return "<parameter=" + k + ">\n" + v + "\n</parameter>\n"; };
  auto call = [](const std::string& name, const std::string& params) {
    return "<tool_call>\n<function=" + name + ">\n" + params + "</function>\n</tool_call>";
  };
  const std::string paris = call("get_weather", param("city", "Paris \"rive\n{gauche}") + param("days", "3"));
  const std::string time = call("get_time", "");
  EXPECT_TRUE(accepts(a, paris));
  EXPECT_TRUE(accepts(a, paris + "\n" + time));  // parallel calls, a newline apart
  // A bounded string excludes '<' (so that it cannot close early).
  EXPECT_FALSE(accepts(a, call("get_weather", param("city", "") + param("days", "7") + param("unit", "celsius") +
                                                  param("code", "ab<c") + param("where", "{\"lat\": 1.5}"))));
  EXPECT_TRUE(accepts(a, call("get_weather", param("city", "") + param("days", "7") + param("unit", "celsius") +
                                                 param("code", "abcd") + param("where", "{\"lat\": 1.5}"))));
  EXPECT_FALSE(accepts(a, call("get_weather", param("city", "x") + param("days", "8"))));      // maximum 7
  EXPECT_FALSE(accepts(a, call("get_weather", param("city", "x") + param("days", "\"3\""))));  // an integer, as JSON
  EXPECT_FALSE(accepts(a, call("get_weather", param("city", "x"))));                           // days is required
  EXPECT_FALSE(accepts(a, call("get_weather", param("city", "x") + param("days", "1") + param("unit", "kelvin"))));
  EXPECT_FALSE(accepts(a, call("get_weather", param("city", "x") + param("days", "1") + param("code", "abcde"))));
  EXPECT_FALSE(accepts(a, call("get_weather", param("city", "x") + param("days", "1") + param("where", "{}"))));
  EXPECT_FALSE(accepts(a, call("get_weather", param("city", "a\n</parameter>\nb") + param("days", "1"))));
  EXPECT_FALSE(accepts(a, call("get_weather", param("days", "1") + param("city", "x"))));  // the schema's order
  EXPECT_FALSE(accepts(a, call("get_news", "")));
  EXPECT_FALSE(accepts(a, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>"));
  s.only = "get_time";
  auto named = Automaton::build(tool_call_grammar(s));
  EXPECT_TRUE(accepts(named, time));
  EXPECT_FALSE(accepts(named, time + "\n" + time));
  EXPECT_FALSE(accepts(named, paris));
  s.only.reset();
  s.text = true;
  auto text = Automaton::build(tool_call_grammar(s));
  EXPECT_TRUE(accepts(text, "I will check. " + paris + "\n" + time + " done"));
  EXPECT_FALSE(accepts(text, "I will check. " + call("get_weather", param("city", "x"))));
  EXPECT_EQ(ToolCallSpec::from_text(s.to_text()).format, ToolCallFormat::kQwen3Coder);
  // A string keyword with no raw form is refused, naming the tool, the parameter and the keyword.
  ToolCallSpec p;
  p.format = ToolCallFormat::kQwen3Coder;
  p.tools.push_back({"f", nlohmann::ordered_json::parse(
                              R"({"type": "object", "properties": {"s": {"type": "string", "pattern": "^a+$"}}})")});
  const std::string e = error_of([&] { tool_call_grammar(p); });
  EXPECT_NE(e.find("tool 'f'"), std::string::npos) << e;
  EXPECT_NE(e.find("'s'"), std::string::npos) << e;
  EXPECT_NE(e.find("'pattern'"), std::string::npos) << e;
  // Which parameters are raw text: the output parser reads them by the same rule.
  EXPECT_TRUE(qwen3_coder_raw_string(nlohmann::ordered_json::parse(R"({"type": "string"})")));
  EXPECT_TRUE(qwen3_coder_raw_string(nlohmann::ordered_json::parse(R"({"type": ["string", "null"]})")));
  EXPECT_TRUE(qwen3_coder_raw_string(nlohmann::ordered_json::parse(R"({"enum": ["a", "b"]})")));
  EXPECT_TRUE(qwen3_coder_raw_string(nlohmann::ordered_json::parse(R"({"description": "anything"})")));
  EXPECT_FALSE(qwen3_coder_raw_string(nlohmann::ordered_json::parse(R"({"enum": ["a", 1]})")));
  EXPECT_FALSE(qwen3_coder_raw_string(nlohmann::ordered_json::parse(R"({"type": "integer"})")));
  EXPECT_FALSE(qwen3_coder_raw_string(nlohmann::ordered_json::parse(R"({"const": 3})")));
}

// GLM-4.5 / 4.6: calls as its chat template writes them and SGLang's glm45 detector reads them
// (<tool_call>NAME\n, each parameter as <arg_key>KEY</arg_key>\n<arg_value>VALUE</arg_value>\n, then
// </tool_call>; GLM-4.7 without the line breaks), values typed as Qwen3-Coder's.
TEST(ToolCalls, Glm45Format) {
  ToolCallSpec s;
  s.format = ToolCallFormat::kGlm45;
  s.tools.push_back({"get_weather", nlohmann::ordered_json::parse(R"({"type": "object", "properties": {
      "city": {"type": "string"}, "date": {"type": "string"}, "days": {"type": "integer", "maximum": 7},
      "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city"]})")});
  s.tools.push_back({"get_time", nlohmann::ordered_json::parse(R"({"type": "object", "properties": {}})")});
  auto a = Automaton::build(tool_call_grammar(s));
  // The format's published example (SGLang's and vLLM's GLM-4.5 parser tests).
  const std::string example =
      "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Beijing</arg_value>\n"
      "<arg_key>date</arg_key>\n<arg_value>2024-12-25</arg_value>\n</tool_call>";
  EXPECT_TRUE(accepts(a, example));
  auto arg = [](const std::string& k, const std::string& v, const std::string& nl = "\n") {
    return "<arg_key>" + k + "</arg_key>" + nl + "<arg_value>" + v + "</arg_value>" + nl;
  };
  auto call = [](const std::string& name, const std::string& args, const std::string& nl = "\n") {
    return "<tool_call>" + name + nl + args + "</tool_call>";
  };
  const std::string time = call("get_time", "");
  EXPECT_TRUE(accepts(a, example + "\n" + time));  // parallel calls, a newline apart
  EXPECT_TRUE(accepts(a, call("get_weather", arg("city", "a \"b\"\n{c}") + arg("days", "3") + arg("unit", "celsius"))));
  EXPECT_FALSE(accepts(a, call("get_weather", arg("city", "x") + arg("days", "8"))));      // maximum 7
  EXPECT_FALSE(accepts(a, call("get_weather", arg("city", "x") + arg("days", "\"3\""))));  // an integer, as JSON
  EXPECT_FALSE(accepts(a, call("get_weather", arg("date", "x"))));                         // city is required
  EXPECT_FALSE(accepts(a, call("get_weather", arg("city", "x") + arg("unit", "kelvin"))));
  EXPECT_FALSE(accepts(a, call("get_weather", arg("date", "x") + arg("city", "y"))));      // the schema's order
  EXPECT_FALSE(accepts(a, call("get_weather", arg("city", "x", ""))));                     // GLM-4.7's spelling
  EXPECT_FALSE(accepts(a, call("get_news", "")));
  s.only = "get_time";
  auto named = Automaton::build(tool_call_grammar(s));
  EXPECT_TRUE(accepts(named, time));
  EXPECT_FALSE(accepts(named, time + "\n" + time));
  EXPECT_FALSE(accepts(named, example));
  s.only.reset();
  s.text = true;
  auto text = Automaton::build(tool_call_grammar(s));
  EXPECT_TRUE(accepts(text, "Let me search for that.\n" + example + "\nThe weather will be..."));
  EXPECT_FALSE(accepts(text, "Let me look. " + call("get_weather", arg("date", "x"))));
  EXPECT_EQ(ToolCallSpec::from_text(s.to_text()).format, ToolCallFormat::kGlm45);
  // GLM-4.7: no line breaks inside a block.
  s.text = false;
  s.format = ToolCallFormat::kGlm47;
  auto g47 = Automaton::build(tool_call_grammar(s));
  EXPECT_TRUE(accepts(g47, call("get_weather", arg("city", "Beijing", "") + arg("days", "2", ""), "")));
  EXPECT_FALSE(accepts(g47, example));
  EXPECT_EQ(ToolCallSpec::from_text(s.to_text()).format, ToolCallFormat::kGlm47);
  // A string keyword with no raw form is refused, naming the format.
  ToolCallSpec p;
  p.format = ToolCallFormat::kGlm45;
  p.tools.push_back({"f", nlohmann::ordered_json::parse(
                              R"({"type": "object", "properties": {"s": {"type": "string", "pattern": "^a+$"}}})")});
  const std::string e = error_of([&] { tool_call_grammar(p); });
  EXPECT_NE(e.find("glm45's format"), std::string::npos) << e;
}

TEST(ToolCalls, Llama3FormatAndThinking) {
  ToolCallSpec s = weather_tools(ToolCallFormat::kLlama3);
  auto a = Automaton::build(tool_call_grammar(s));
  EXPECT_TRUE(accepts(a, R"({"name": "get_weather", "parameters": {"city": "Oslo"}})"));
  EXPECT_TRUE(accepts(a, R"({"name": "get_time", "parameters": {}}; {"name": "get_time", "parameters": {}})"));
  EXPECT_FALSE(accepts(a, R"({"name": "get_weather", "arguments": {"city": "Oslo"}})"));
  s = weather_tools(ToolCallFormat::kHermes);
  s.think = true;
  auto t = Automaton::build(tool_call_grammar(s));
  const std::string call = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
  EXPECT_TRUE(accepts(t, call));
  EXPECT_TRUE(accepts(t, "<think>I need </thin the time 日本</think>\n\n" + call));
  EXPECT_FALSE(accepts(t, "<think>a</think>b</think>" + call));  // the block ends at the first </think>
  EXPECT_FALSE(accepts(t, "<think>unfinished" + call));
  // A template that ends the prompt inside <think> (QwQ, DeepSeek-R1): the output goes on reasoning,
  // closes the block, then calls; it cannot open a second one first nor skip the close.
  s.think_open = true;
  auto open = Automaton::build(tool_call_grammar(s));
  EXPECT_TRUE(accepts(open, "I need the time</think>\n\n" + call));
  EXPECT_TRUE(accepts(open, "</think>" + call));
  EXPECT_FALSE(accepts(open, call));
  EXPECT_FALSE(accepts(open, "<think>x</think>y</think>" + call));
  EXPECT_EQ(ToolCallSpec::from_text(s.to_text()).to_text(), s.to_text());
}

// tool_choice auto with strict tools: free text, and a call the model opens must be valid (SGLang's
// structural tag for auto: the parser's opener as trigger, each call's arguments by its schema).
TEST(ToolCalls, AutoModeHoldsOnlyTheCallsTheModelOpens) {
  ToolCallSpec s = weather_tools(ToolCallFormat::kHermes);
  s.text = true;
  auto a = Automaton::build(tool_call_grammar(s));
  const std::string call = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
  const std::string time = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
  EXPECT_TRUE(accepts(a, ""));
  EXPECT_TRUE(accepts(a, "No tool needed: it is 3 pm. <tool_cal"));
  EXPECT_TRUE(accepts(a, "Let me look. " + call));
  EXPECT_TRUE(accepts(a, call + "\n" + time + "\nDone."));  // parallel: text again, then another call
  EXPECT_FALSE(accepts(a, "x <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_FALSE(accepts(a, "x <tool_call>\n{\"name\": \"get_news\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_FALSE(accepts(a, "<tool_call> not json"));
  s.parallel = false;
  auto single = Automaton::build(tool_call_grammar(s));
  EXPECT_TRUE(accepts(single, "Sure. " + call));
  EXPECT_FALSE(accepts(single, call + "\n" + time));
  EXPECT_FALSE(accepts(single, call + " and more"));  // nothing after the one call
  EXPECT_EQ(ToolCallSpec::from_text(s.to_text()).to_text(), s.to_text());
  EXPECT_TRUE(ToolCallSpec::from_text(s.to_text()).text);

  s = weather_tools(ToolCallFormat::kMistral);
  s.text = true;
  auto m = Automaton::build(tool_call_grammar(s));
  EXPECT_TRUE(accepts(m, "Hello [TOOL_CALL"));
  EXPECT_TRUE(accepts(m, R"(Hi [TOOL_CALLS] [{"name": "get_time", "arguments": {}}] ok)"));
  EXPECT_FALSE(accepts(m, R"([TOOL_CALLS] [{"name": "get_weather", "arguments": {}}])"));
  s.format = ToolCallFormat::kMistralV11;
  auto v11 = Automaton::build(tool_call_grammar(s));
  EXPECT_TRUE(accepts(v11, R"(ok[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}[TOOL_CALLS]get_time[ARGS]{})"));
  EXPECT_FALSE(accepts(v11, R"([TOOL_CALLS]get_date[ARGS]{})"));
  s.format = ToolCallFormat::kDeepSeekV31;
  auto ds = Automaton::build(tool_call_grammar(s));
  const std::string v31 = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  EXPECT_TRUE(accepts(ds, "好的 " + v31 + " 完成"));
  EXPECT_FALSE(accepts(ds, "<｜tool▁calls▁begin｜>get_time"));
  // Llama 3.1 JSON calls: the turn is calls when it opens with `{`, else any text.
  s.format = ToolCallFormat::kLlama3;
  auto l = Automaton::build(tool_call_grammar(s));
  EXPECT_TRUE(accepts(l, "It is sunny {not a call}"));
  EXPECT_TRUE(accepts(l, R"(  {"name": "get_weather", "parameters": {"city": "Oslo"}})"));
  EXPECT_TRUE(accepts(l, ""));
  EXPECT_FALSE(accepts(l, R"({"name": "get_weather", "parameters": {}})"));
  EXPECT_FALSE(accepts(l, "\n{ plain braces }"));
}

TEST(Automaton, SerializationRoundTrip) {
  for (const auto& a : {schema(R"({"type": "object", "properties": {"a": {"type": "string"}}})"),
                        Automaton::build(json_object_grammar()), gbnf("root ::= \"(\" root \")\" | \"x\"")}) {
    const std::string bytes = a->serialize();
    auto b = Automaton::deserialize(bytes);
    EXPECT_EQ(b->serialize(), bytes);
    EXPECT_EQ(b->fingerprint(), a->fingerprint());
  }
  auto nested = gbnf("root ::= \"(\" root \")\" | \"x\"");
  auto copy = Automaton::deserialize(nested->serialize());
  EXPECT_TRUE(accepts(copy, "((x))"));
  EXPECT_FALSE(accepts(copy, "((x)"));
}

TEST(Automaton, CorruptBuffersAreErrorsNotCrashes) {
  const std::string good = schema(R"({"type": "array", "items": {"type": "integer"}})")->serialize();
  for (size_t n = 0; n < good.size(); n += 7) EXPECT_THROW(Automaton::deserialize(good.substr(0, n)), Error);
  std::mt19937 rng(5);
  int refused = 0;
  for (int i = 0; i < 2000; ++i) {
    std::string bad = good;
    bad[std::uniform_int_distribution<size_t>(0, bad.size() - 1)(rng)] ^= char(1 << (i % 8));
    try {
      auto a = Automaton::deserialize(bad);
      accepts(a, "[1,2]");  // whatever it accepts, reading it stays in bounds
    } catch (const Error&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
}

TEST(CompileCache, CompilesOnceAndRemembersFailures) {
  CompileCache cache(2);
  ConstraintSpec s{ConstraintKind::kRegex, "a+"};
  auto a = cache.get(s), b = cache.get(s);
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(cache.misses(), 1u);
  ConstraintSpec bad{ConstraintKind::kRegex, "(a"};
  EXPECT_THROW(cache.get(bad), Error);
  EXPECT_THROW(cache.get(bad), Error);
  EXPECT_EQ(cache.misses(), 2u);
  cache.get({ConstraintKind::kRegex, "b"});
  cache.get({ConstraintKind::kRegex, "c"});  // capacity 2: "a+" is gone
  cache.get(s);
  EXPECT_EQ(cache.misses(), 5u);
}

// Distinct large constraints cannot pile up: the cache keeps what fits its byte budget (the
// newest always), drops the least recently used first, and recompiles a dropped one on demand.
TEST(CompileCache, StaysWithinItsByteBudget) {
  // Regexes of 60 alternatives of 12 letters compile to a few kilobytes each.
  auto big = [](int seed) {
    std::string r;
    for (int i = 0; i < 60; ++i) {
      if (i) r += "|";
      for (int k = 0; k < 12; ++k) r += char('a' + (seed * 7 + i * 13 + k * 5) % 26);
    }
    return r;
  };
  const size_t one = CompileCache().get({ConstraintKind::kRegex, big(0)})->bytes();
  ASSERT_GT(one, 2000u);
  const size_t budget = 3 * one + one / 2;  // room for three
  CompileCache cache(256, {}, budget);
  for (int i = 0; i < 12; ++i) {
    cache.get({ConstraintKind::kRegex, big(i)});
    EXPECT_LE(cache.bytes(), budget) << "after " << i + 1 << " schemas";
  }
  EXPECT_EQ(cache.misses(), 12u);
  cache.get({ConstraintKind::kRegex, big(11)});  // kept: a hit
  EXPECT_EQ(cache.misses(), 12u);
  cache.get({ConstraintKind::kRegex, big(0)});  // dropped long ago: compiled again
  EXPECT_EQ(cache.misses(), 13u);
  // One constraint larger than the whole budget is still served (and is then the only one kept).
  CompileCache tiny(256, {}, 100);
  EXPECT_TRUE(tiny.get({ConstraintKind::kRegex, big(3)}));
  EXPECT_TRUE(tiny.get({ConstraintKind::kRegex, big(4)}));
  EXPECT_LT(tiny.bytes(), 2 * one);  // big(3) is gone
}

// A vocabulary of n tokens "t0".."t{n-1}" (text), so a mask entry is n / 8 bytes.
std::shared_ptr<const VocabIndex> numbered_vocab(int n) {
  std::vector<std::string> b;
  for (int i = 0; i < n; ++i) b.push_back("t" + std::to_string(i));
  b.push_back("");
  std::vector<bool> text(size_t(n) + 1, true);
  text[size_t(n)] = false;
  return std::make_shared<VocabIndex>(b, text, std::vector<int32_t>{n}, n + 1);
}

// Walks a matcher of `a` through `s` token by token (tokens are "t<digit>" here), filling the
// mask at every step so the cache computes its entries.
void walk(Matcher& m, const std::string& digits) {
  std::vector<uint64_t> mask(m.vocab().mask_words());
  for (char c : digits) {
    m.fill_mask(mask.data());
    ASSERT_TRUE(m.accept(c - '0'));
  }
  m.fill_mask(mask.data());
}

// One automaton's mask cache starts over at its byte cap; the registry keeps the caches of many
// automata within its budget at every make() (least recently used dropped first), and a dropped
// cache only costs a recomputation: the masks stay the same.
TEST(MatcherRegistry, MaskCachesStayWithinTheirByteBudgets) {
  const auto v = numbered_vocab(20000);  // 2.5 KB a mask entry
  // "t0t1t2..." as long runs of distinct states: one entry per state reached.
  auto chain = [](int seed) {
    std::string r;
    for (int i = 0; i < 40; ++i) r += "t" + std::to_string((seed + i) % 10);
    return r;
  };
  auto digits = [](int seed) {
    std::string d;
    for (int i = 0; i < 40; ++i) d += char('0' + (seed + i) % 10);
    return d;
  };
  {
    auto cache = std::make_shared<TokenMaskCache>(regex(chain(0)), v, 20000);
    Matcher m(cache);
    walk(m, digits(0));
    if (HasFatalFailure()) return;
    EXPECT_GT(cache->misses(), 30u);
    EXPECT_LE(cache->bytes(), 20000u + 3000u);  // the cap plus the entry that starts it over
  }
  const size_t budget = 60000, cap = 30000;
  MatcherRegistry reg(v, 64, budget, cap);
  for (int i = 0; i < 10; ++i) {
    auto m = reg.make(regex(chain(i)));
    EXPECT_LE(reg.bytes(), budget) << "after make() of automaton " << i;
    walk(*m, digits(i));
    if (HasFatalFailure()) return;
    EXPECT_LE(reg.bytes(), budget + cap + 3000) << "after automaton " << i << " decoded";
  }
  auto m2 = reg.make(regex(chain(42)));
  EXPECT_LE(reg.bytes(), budget);
  EXPECT_LT(reg.size(), 10u);
  // The first automaton's cache was dropped; its masks are the same when recomputed.
  auto a0 = regex(chain(0));
  Matcher fresh(std::make_shared<TokenMaskCache>(a0, v));
  auto again = reg.make(a0);
  std::vector<uint64_t> x(v->mask_words()), y(v->mask_words());
  for (char c : digits(0)) {
    fresh.fill_mask(x.data());
    again->fill_mask(y.data());
    ASSERT_EQ(x, y);
    ASSERT_TRUE(fresh.accept(c - '0'));
    ASSERT_TRUE(again->accept(c - '0'));
  }
}

TEST(Matcher, EndsOnlyWhereTheGrammarDoesAndRefusesSpecialTokens) {
  std::vector<std::string> bytes = {"a", "b", "ab", "<s>", "</s>"};
  auto v = std::make_shared<VocabIndex>(bytes, std::vector<bool>{true, true, true, false, false},
                                        std::vector<int32_t>{4}, 8);
  Matcher m(std::make_shared<TokenMaskCache>(regex("a(b)?"), v));
  std::vector<uint64_t> mask(v->mask_words());
  m.fill_mask(mask.data());
  EXPECT_EQ(mask[0], 0b101u);  // "a", "ab"
  EXPECT_FALSE(m.accept(3));   // a special token
  EXPECT_FALSE(m.accept(4));   // EOS before the grammar may end
  EXPECT_TRUE(m.accept(0));
  m.fill_mask(mask.data());
  EXPECT_EQ(mask[0], 0b10010u);  // "b" or EOS
  EXPECT_TRUE(m.can_end());
  EXPECT_FALSE(m.must_end());
  EXPECT_TRUE(m.accept(1));
  EXPECT_TRUE(m.must_end());
  m.fill_mask(mask.data());
  EXPECT_EQ(mask[0], 0b10000u);  // only EOS
  EXPECT_TRUE(m.accept(4));
  EXPECT_TRUE(m.ended());
}

}  // namespace
}  // namespace dpserve::constrain
