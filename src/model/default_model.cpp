#include "model/default_model.h"

#include <filesystem>

#include "core/check.h"
#include "core/shared_dir.h"
#include "model/gguf_set.h"

namespace fs = std::filesystem;

namespace dpserve {

static std::string llama2c_tokenizer_beside(const fs::path& model) {
  fs::path dir = model.parent_path();
  if (dir.empty()) dir = ".";
  for (const char* name : {"tokenizer.bin", "tok512.bin"})
    if (fs::exists(dir / name)) return (dir / name).string();
  for (auto& e : fs::directory_iterator(dir)) {
    auto n = e.path().filename().string();
    if (n.rfind("tok", 0) == 0 && e.path().extension() == ".bin") return e.path().string();
  }
  return "";
}

ModelLocation resolve_model(const std::string& model_path, const std::string& tokenizer_path) {
  ModelLocation loc;
  if (model_path.empty()) {
    fs::path stories = fs::path(shared_dir()) / "models" / "stories260K" / "stories260K.bin";
    fs::path generated = fs::path(DPSERVE_SOURCE_DIR) / "models-generated" / "default";
    if (fs::exists(stories)) {
      loc.model = stories.string();
      loc.why = "serving the bundled llama2.c stories260K (" + loc.model + "); use --model-path for another model";
    } else if (fs::exists(generated / "config.json")) {
      loc.model = generated.string();
      loc.why = "serving the generated random-weight default model (" + loc.model +
                ") because the shared reference models are not present; use --model-path for a real model";
    } else {
      fail("no --model-path given, and neither the bundled stories260K ({}) nor a generated default model ({}) "
           "exists; run scripts/setup.sh or pass --model-path",
           stories.string(), generated.string());
    }
  } else {
    loc.model = model_path;
    loc.why = "serving " + model_path;
  }
  if (!fs::exists(loc.model)) fail("--model-path {} does not exist", loc.model);
  if (!tokenizer_path.empty()) {
    loc.tokenizer = tokenizer_path;
  } else if (std::string gguf = find_gguf_model(loc.model); !gguf.empty()) {
    loc.tokenizer = gguf;  // a GGUF model carries its vocabulary
  } else if (fs::is_directory(loc.model)) {
    loc.tokenizer = loc.model;
  } else {
    loc.tokenizer = llama2c_tokenizer_beside(fs::path(loc.model));
  }
  return loc;
}

}  // namespace dpserve
