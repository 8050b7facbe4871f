// generation_config.json's sampling fields as defaults: what is taken, what is refused and said.
#include <gtest/gtest.h>

#include "core/check.h"
#include "server/sampling_defaults.h"

namespace dpserve {
namespace {

using nlohmann::json;

TEST(SamplingDefaults, TakesTheFiveFieldsAndNothingElse) {
  std::vector<std::string> warnings;
  const auto d = SamplingDefaults::from_generation_config(
      json{{"temperature", 0.6}, {"top_p", 0.95}, {"top_k", 20}, {"min_p", 0.0}, {"repetition_penalty", 1.05},
           {"do_sample", true}, {"max_new_tokens", 2048}, {"eos_token_id", {1, 2}}},
      "g.json", warnings);
  EXPECT_TRUE(warnings.empty());
  EXPECT_EQ(d.to_json(), (json{{"temperature", 0.6}, {"top_p", 0.95}, {"top_k", 20}, {"min_p", 0.0},
                               {"repetition_penalty", 1.05}}));
  SamplingParams p;  // OpenAI's defaults, then the model's over them
  p.frequency_penalty = 0.5f;
  d.apply(p);
  EXPECT_FLOAT_EQ(p.temperature, 0.6f);
  EXPECT_FLOAT_EQ(p.top_p, 0.95f);
  EXPECT_EQ(p.top_k, 20);
  EXPECT_FLOAT_EQ(p.repetition_penalty, 1.05f);
  EXPECT_FLOAT_EQ(p.frequency_penalty, 0.5f);  // not a field the file sets
}

TEST(SamplingDefaults, TopKZeroIsOffAsInTransformers) {
  std::vector<std::string> warnings;
  const auto d = SamplingDefaults::from_generation_config(json{{"top_k", 0}}, "g.json", warnings);
  EXPECT_TRUE(warnings.empty());
  ASSERT_TRUE(d.top_k.has_value());
  EXPECT_EQ(*d.top_k, -1);
}

TEST(SamplingDefaults, ValuesNoRequestCouldSendAreLeftOutAndNamed) {
  std::vector<std::string> warnings;
  const auto d = SamplingDefaults::from_generation_config(
      json{{"temperature", -0.5}, {"top_p", 1.5}, {"top_k", 3.5}, {"min_p", "0.1"}, {"repetition_penalty", nullptr}},
      "g.json", warnings);
  EXPECT_TRUE(d.empty());
  ASSERT_EQ(warnings.size(), 4u);  // null is absent, not wrong
  EXPECT_NE(warnings[0].find("temperature -0.5"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[1].find("top_p 1.5"), std::string::npos) << warnings[1];
  EXPECT_NE(warnings[2].find("min_p is not a number"), std::string::npos) << warnings[2];
  EXPECT_NE(warnings[3].find("top_k 3.5"), std::string::npos) << warnings[3];
  for (const auto& w : warnings) EXPECT_EQ(w.rfind("g.json: ", 0), 0u) << w;

  warnings.clear();
  EXPECT_TRUE(SamplingDefaults::from_generation_config(json::array(), "g.json", warnings).empty());
  EXPECT_EQ(warnings.size(), 1u);
}

TEST(SamplingDefaults, NoFileNoDefaults) {
  std::vector<std::string> warnings;
  EXPECT_TRUE(SamplingDefaults::load("/nonexistent/model", warnings).empty());
  EXPECT_TRUE(warnings.empty());
}

// SGLang's --preferred-sampling-params: its sampling_params names; everything else stops the server.
TEST(SamplingDefaults, PreferredTakesSevenFieldsAndOverlaysTheModels) {
  const auto pref = SamplingDefaults::from_preferred(
      R"({"temperature": 0, "top_k": 5, "frequency_penalty": 0.5, "presence_penalty": -1, "min_p": null})");
  EXPECT_EQ(pref.to_json(),
            (json{{"temperature", 0.0}, {"top_k", 5}, {"frequency_penalty", 0.5}, {"presence_penalty", -1.0}}));
  std::vector<std::string> warnings;
  auto d = SamplingDefaults::from_generation_config(json{{"temperature", 0.6}, {"top_p", 0.9}, {"top_k", 20}},
                                                    "g.json", warnings);
  d.overlay(pref);
  EXPECT_EQ(d.to_json(), (json{{"temperature", 0.0}, {"top_p", 0.9}, {"top_k", 5}, {"frequency_penalty", 0.5},
                               {"presence_penalty", -1.0}}));
  SamplingParams p;
  d.apply(p);
  EXPECT_FLOAT_EQ(p.temperature, 0.0f);
  EXPECT_FLOAT_EQ(p.top_p, 0.9f);
  EXPECT_EQ(p.top_k, 5);
  EXPECT_FLOAT_EQ(p.frequency_penalty, 0.5f);
  EXPECT_FLOAT_EQ(p.presence_penalty, -1.0f);
  EXPECT_TRUE(SamplingDefaults::from_preferred("{}").empty());
}

TEST(SamplingDefaults, PreferredRefusesWhatItCannotApply) {
  auto message = [](const std::string& text) {
    try {
      SamplingDefaults::from_preferred(text);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  for (const auto& [text, want] : std::vector<std::pair<std::string, std::string>>{
           {"temperature=0", "must be a JSON object"},
           {"[0.5]", "must be a JSON object"},
           {R"({"max_new_tokens": 64})", "'max_new_tokens' is not supported"},
           {R"({"temperature": -1})", "temperature -1 must be in"},
           {R"({"top_p": 0})", "top_p 0 must be in"},
           {R"({"top_k": 2.5})", "top_k must be an integer"},
           {R"({"top_k": -7})", "top_k -7 must be -1"},
           {R"({"top_k": 18446744073709551615})", "top_k 18446744073709551615 must be -1"},
           {R"({"presence_penalty": "high"})", "presence_penalty must be a number"}}) {
    const std::string got = message(text);
    EXPECT_NE(got.find(want), std::string::npos) << text << " -> " << got;
    EXPECT_NE(got.find("--preferred-sampling-params"), std::string::npos) << got;
  }
}

}  // namespace
}  // namespace dpserve
