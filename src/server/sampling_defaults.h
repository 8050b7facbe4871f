// Sampling values for the fields a request leaves out: the model's own (SGLang's --sampling-defaults
// model, vLLM's --generation-config auto, llama.cpp's general.sampling.*: what generation_config.json or a
// GGUF file recommends) and the operator's (SGLang's --preferred-sampling-params).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/sampling_params.h"

namespace dpserve {

struct SamplingDefaults {
  std::optional<double> temperature, top_p, min_p, repetition_penalty, frequency_penalty, presence_penalty;
  std::optional<int64_t> top_k;

  bool empty() const {
    return !temperature && !top_p && !min_p && !repetition_penalty && !frequency_penalty && !presence_penalty &&
           !top_k;
  }
  // Sets the fields this holds; a request's own fields are read after, over them.
  void apply(SamplingParams& p) const;
  // Takes every field `over` holds (the operator's preferences over the model's defaults).
  void overlay(const SamplingDefaults& over);
  // {"temperature": 0.6, ...}: only the fields held, as the file wrote them.
  nlohmann::json to_json() const;

  // From `model_path`'s generation_config.json (a Hugging Face folder) or its GGUF metadata
  // (general.sampling.temp / top_k / top_p / min_p / penalty_repeat); empty for anything else. A value
  // outside what a request may send (temperature < 0, top_p outside (0, 1], ...) is left out, with a
  // line in `warnings` naming it; a malformed generation_config.json is one warning and no defaults.
  static SamplingDefaults load(const std::string& model_path, std::vector<std::string>& warnings);
  // The same from generation_config.json's parsed contents (`where` names it in warnings).
  static SamplingDefaults from_generation_config(const nlohmann::json& j, const std::string& where,
                                                 std::vector<std::string>& warnings);
  // --preferred-sampling-params: a JSON object of SGLang sampling_params names (temperature, top_p, top_k,
  // min_p, repetition_penalty, frequency_penalty, presence_penalty). Strict, as the operator wrote it: bad
  // JSON, another key or a value no request could send throws an Error naming it.
  static SamplingDefaults from_preferred(const std::string& json_text);
};

}  // namespace dpserve
