#include "engine/lora_registry.h"

#include <fmt/format.h>

#include "core/check.h"

namespace dpserve {

LoraRegistry::LoraRegistry(const std::vector<std::pair<std::string, std::string>>& name_path) {
  for (const auto& [name, path] : name_path) {
    Slot s;
    s.state = State::kLoaded;
    s.a = Adapter{name, path, int32_t(slots_.size()), next_generation_++};
    slots_.push_back(std::move(s));
  }
}

std::optional<LoraRegistry::Adapter> LoraRegistry::find(const std::string& name) const {
  std::lock_guard lk(mu_);
  for (const Slot& s : slots_)
    if (s.state == State::kLoaded && s.a.name == name) return s.a;
  return std::nullopt;
}

std::vector<LoraRegistry::Adapter> LoraRegistry::list() const {
  std::lock_guard lk(mu_);
  std::vector<Adapter> out;
  for (const Slot& s : slots_)
    if (s.state == State::kLoaded) out.push_back(s.a);
  return out;
}

bool LoraRegistry::usable(int32_t slot, uint64_t generation) const {
  std::lock_guard lk(mu_);
  if (slot < 0 || slot >= int32_t(slots_.size())) return false;
  const Slot& s = slots_[size_t(slot)];
  return s.state == State::kLoaded && (generation == 0 || s.a.generation == generation);
}

std::string LoraRegistry::begin_load(const std::string& name, const std::string& path, int32_t& slot) {
  std::lock_guard lk(mu_);
  int32_t free = -1;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    if (s.state == State::kFree) {
      if (free < 0) free = int32_t(i);
      continue;
    }
    if (s.a.name != name) continue;
    switch (s.state) {
      case State::kLoaded: return fmt::format("The LoRA adapter '{}' is already loaded (from {})", name, s.a.path);
      case State::kLoading: return fmt::format("The LoRA adapter '{}' is being loaded", name);
      default: return fmt::format("The LoRA adapter '{}' is being unloaded", name);
    }
  }
  if (free < 0) {
    free = int32_t(slots_.size());
    slots_.emplace_back();
  }
  Slot& s = slots_[size_t(free)];
  s.state = State::kLoading;
  s.a = Adapter{name, path, free, 0};
  slot = free;
  return {};
}

void LoraRegistry::end_load(int32_t slot, bool ok) {
  std::lock_guard lk(mu_);
  DP_CHECK(slot >= 0 && slot < int32_t(slots_.size()) && slots_[size_t(slot)].state == State::kLoading,
           "LoRA slot {} is not being loaded", slot);
  Slot& s = slots_[size_t(slot)];
  if (ok) {
    s.state = State::kLoaded;
    s.a.generation = next_generation_++;
  } else {
    s = Slot{};
  }
}

std::optional<int32_t> LoraRegistry::begin_unload(const std::string& name) {
  std::lock_guard lk(mu_);
  for (Slot& s : slots_)
    if (s.state == State::kLoaded && s.a.name == name) {
      s.state = State::kUnloading;
      return s.a.slot;
    }
  return std::nullopt;
}

void LoraRegistry::end_unload(int32_t slot) {
  std::lock_guard lk(mu_);
  DP_CHECK(slot >= 0 && slot < int32_t(slots_.size()) && slots_[size_t(slot)].state == State::kUnloading,
           "LoRA slot {} is not being unloaded", slot);
  slots_[size_t(slot)] = Slot{};
}

}  // namespace dpserve
