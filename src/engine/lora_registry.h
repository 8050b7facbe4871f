// The LoRA adapters rank 0 serves: each one's name, folder and slot (Request::lora), and which
// slots requests may use right now. Thread-safe: HTTP threads resolve names and list adapters
// while /load_lora_adapter and /unload_lora_adapter change them (engine/dp_engine.h runs those).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace dpserve {

class LoraRegistry {
 public:
  struct Adapter {
    std::string name;
    std::string path;
    int32_t slot = -1;
    // Bumped by every load: a request resolved before an unload carries the old value, so it can
    // never run a later adapter that reuses the slot (usable()).
    uint64_t generation = 0;
  };

  // Start-up adapters (--lora-paths), loaded into slots 0, 1, ... in this order.
  explicit LoraRegistry(const std::vector<std::pair<std::string, std::string>>& name_path = {});

  // A loaded adapter by name (not one being loaded or unloaded).
  std::optional<Adapter> find(const std::string& name) const;
  // The loaded adapters, in slot order.
  std::vector<Adapter> list() const;
  // True when `slot` holds a loaded adapter, of this `generation` unless it is 0 (any).
  bool usable(int32_t slot, uint64_t generation = 0) const;

  // A load: takes the name and the lowest free slot (reused after an unload) and returns it; until
  // end_load the name is taken but not usable. "" and the slot, or why not (the name is loaded,
  // or being loaded or unloaded).
  std::string begin_load(const std::string& name, const std::string& path, int32_t& slot);
  void end_load(int32_t slot, bool ok);  // ok: usable from now on; else the slot is free again
  // An unload: the adapter stops being findable and usable at once; end_unload frees its slot.
  // nullopt when no loaded adapter has this name.
  std::optional<int32_t> begin_unload(const std::string& name);
  void end_unload(int32_t slot);

 private:
  enum class State { kFree, kLoading, kLoaded, kUnloading };
  struct Slot {
    State state = State::kFree;
    Adapter a;
  };
  mutable std::mutex mu_;
  std::vector<Slot> slots_;
  uint64_t next_generation_ = 1;
};

}  // namespace dpserve
