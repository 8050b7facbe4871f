#include "server/sampling_defaults.h"

#include <cstdint>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "core/check.h"
#include "engine/request_limits.h"
#include "model/gguf_set.h"

namespace dpserve {
namespace {

using P = RequestParam;

// Keeps `v` in `slot` when a request could send it; else a warning naming where it came from.
void take_float(std::optional<double> v, P p, const std::string& key, const std::string& where,
                std::optional<double>& slot, std::vector<std::string>& warnings) {
  if (!v) return;
  if (auto rule = RequestLimits::value_rule(p, *v)) {
    warnings.push_back(fmt::format("{}: {} {} is not used: {} {}", where, key, *v, field_name(p), *rule));
    return;
  }
  slot = *v;
}

void take_top_k(std::optional<int64_t> v, const std::string& key, const std::string& where,
                std::optional<int64_t>& slot, std::vector<std::string>& warnings) {
  if (!v) return;
  const int64_t k = *v == 0 ? -1 : *v;  // 0 turns top-k off in transformers and llama.cpp alike
  if (auto rule = RequestLimits::int_rule(P::kTopK, k)) {
    warnings.push_back(fmt::format("{}: {} {} is not used: top_k {}", where, key, *v, *rule));
    return;
  }
  slot = k;
}

std::optional<double> json_number(const nlohmann::json& j, const char* key, const std::string& where,
                                  std::vector<std::string>& warnings) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) {
    warnings.push_back(fmt::format("{}: {} is not a number; not used", where, key));
    return std::nullopt;
  }
  return it->get<double>();
}

}  // namespace

void SamplingDefaults::apply(SamplingParams& p) const {
  if (temperature) p.temperature = float(*temperature);
  if (top_p) p.top_p = float(*top_p);
  if (min_p) p.min_p = float(*min_p);
  if (repetition_penalty) p.repetition_penalty = float(*repetition_penalty);
  if (frequency_penalty) p.frequency_penalty = float(*frequency_penalty);
  if (presence_penalty) p.presence_penalty = float(*presence_penalty);
  if (top_k) p.top_k = int32_t(*top_k);
}

void SamplingDefaults::overlay(const SamplingDefaults& over) {
  for (auto [mine, theirs] : {std::pair{&temperature, &over.temperature}, {&top_p, &over.top_p},
                              {&min_p, &over.min_p}, {&repetition_penalty, &over.repetition_penalty},
                              {&frequency_penalty, &over.frequency_penalty},
                              {&presence_penalty, &over.presence_penalty}})
    if (*theirs) *mine = *theirs;
  if (over.top_k) top_k = over.top_k;
}

nlohmann::json SamplingDefaults::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  if (temperature) j["temperature"] = *temperature;
  if (top_p) j["top_p"] = *top_p;
  if (top_k) j["top_k"] = *top_k;
  if (min_p) j["min_p"] = *min_p;
  if (repetition_penalty) j["repetition_penalty"] = *repetition_penalty;
  if (frequency_penalty) j["frequency_penalty"] = *frequency_penalty;
  if (presence_penalty) j["presence_penalty"] = *presence_penalty;
  return j;
}

SamplingDefaults SamplingDefaults::from_preferred(const std::string& json_text) {
  const nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    fail("--preferred-sampling-params must be a JSON object such as '{{\"temperature\": 0.6}}', got '{}'",
         json_text);
  SamplingDefaults d;
  const struct {
    const char* key;
    P param;
    std::optional<double>* slot;
  } floats[] = {{"temperature", P::kTemperature, &d.temperature},
                {"top_p", P::kTopP, &d.top_p},
                {"min_p", P::kMinP, &d.min_p},
                {"repetition_penalty", P::kRepetitionPenalty, &d.repetition_penalty},
                {"frequency_penalty", P::kFrequencyPenalty, &d.frequency_penalty},
                {"presence_penalty", P::kPresencePenalty, &d.presence_penalty}};
  for (const auto& [key, v] : j.items()) {
    if (v.is_null()) continue;
    if (key == "top_k") {
      if (!v.is_number_integer()) fail("--preferred-sampling-params: top_k must be an integer, got {}", v.dump());
      // An unsigned 2^64 - 1 would wrap to -1 ("off"): past int64 it is out of range instead.
      const int64_t k = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX
                        : v.get<int64_t>() == 0                                           ? -1
                                                                                          : v.get<int64_t>();
      if (auto rule = RequestLimits::int_rule(P::kTopK, k))
        fail("--preferred-sampling-params: top_k {} {}", v.dump(), *rule);
      d.top_k = k;
      continue;
    }
    size_t i = 0;
    while (i < std::size(floats) && key != floats[i].key) ++i;
    if (i == std::size(floats))
      fail("--preferred-sampling-params: '{}' is not supported (it takes temperature, top_p, top_k, min_p, "
           "repetition_penalty, frequency_penalty and presence_penalty)", key);
    if (!v.is_number()) fail("--preferred-sampling-params: {} must be a number, got {}", key, v.dump());
    if (auto rule = RequestLimits::value_rule(floats[i].param, v.get<double>()))
      fail("--preferred-sampling-params: {} {} {}", key, v.dump(), *rule);
    *floats[i].slot = v.get<double>();
  }
  return d;
}

SamplingDefaults SamplingDefaults::from_generation_config(const nlohmann::json& j, const std::string& where,
                                                          std::vector<std::string>& warnings) {
  SamplingDefaults d;
  if (!j.is_object()) {
    warnings.push_back(fmt::format("{}: not a JSON object; no sampling defaults taken from it", where));
    return d;
  }
  take_float(json_number(j, "temperature", where, warnings), P::kTemperature, "temperature", where, d.temperature,
             warnings);
  take_float(json_number(j, "top_p", where, warnings), P::kTopP, "top_p", where, d.top_p, warnings);
  take_float(json_number(j, "min_p", where, warnings), P::kMinP, "min_p", where, d.min_p, warnings);
  take_float(json_number(j, "repetition_penalty", where, warnings), P::kRepetitionPenalty, "repetition_penalty",
             where, d.repetition_penalty, warnings);
  if (auto k = json_number(j, "top_k", where, warnings)) {
    if (*k != double(int64_t(*k)))
      warnings.push_back(fmt::format("{}: top_k {} is not an integer; not used", where, *k));
    else
      take_top_k(int64_t(*k), "top_k", where, d.top_k, warnings);
  }
  return d;
}

SamplingDefaults SamplingDefaults::load(const std::string& model_path, std::vector<std::string>& warnings) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(model_path, ec) && fs::exists(fs::path(model_path) / "config.json", ec)) {
    const fs::path f = fs::path(model_path) / "generation_config.json";
    std::ifstream in(f);
    if (!in) return {};
    const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      warnings.push_back(fmt::format("{}: not valid JSON; no sampling defaults taken from it", f.string()));
      return {};
    }
    return from_generation_config(j, f.string(), warnings);
  }
  const std::string gguf = find_gguf_model(model_path);
  if (gguf.empty()) return {};
  SamplingDefaults d;
  const GgufSet set(gguf);
  const GgufMetadata& m = set.metadata();
  auto number = [&](const char* key) -> std::optional<double> {
    try {
      return m.get_float(key);
    } catch (const Error&) {
      warnings.push_back(fmt::format("{}: {} is not a number; not used", gguf, key));
      return std::nullopt;
    }
  };
  take_float(number("general.sampling.temp"), P::kTemperature, "general.sampling.temp", gguf, d.temperature, warnings);
  take_float(number("general.sampling.top_p"), P::kTopP, "general.sampling.top_p", gguf, d.top_p, warnings);
  take_float(number("general.sampling.min_p"), P::kMinP, "general.sampling.min_p", gguf, d.min_p, warnings);
  take_float(number("general.sampling.penalty_repeat"), P::kRepetitionPenalty, "general.sampling.penalty_repeat",
             gguf, d.repetition_penalty, warnings);
  std::optional<int64_t> k;
  try {
    k = m.get_int("general.sampling.top_k");
  } catch (const Error&) {
    warnings.push_back(fmt::format("{}: general.sampling.top_k is not an integer; not used", gguf));
  }
  take_top_k(k, "general.sampling.top_k", gguf, d.top_k, warnings);
  return d;
}

}  // namespace dpserve
