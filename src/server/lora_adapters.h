// --lora-paths: the LoRA (PEFT) adapters a server loads at start-up, each under the name requests
// select it by. An adapter's slot (Request::lora, Model::add_lora's) is its index in the list.
#pragma once

#include <string>
#include <vector>

namespace dpserve {

struct LoraAdapterPath {
  std::string name;
  std::string path;  // the PEFT folder (adapter_config.json, adapter_model.safetensors)
};

// Reads --lora-paths values as SGLang does: "NAME=PATH", a bare PATH (named after its folder), or a
// JSON object {"lora_name": NAME, "lora_path": PATH, "pinned": BOOL} (pinned changes nothing here:
// every adapter stays loaded). Throws dpserve::Error naming the flag for a malformed value, a
// missing folder, a repeated name, or a name equal to the served model's (which `model` selects).
std::vector<LoraAdapterPath> parse_lora_paths(const std::vector<std::string>& values, const std::string& served_model_name);

}  // namespace dpserve
