// Which model to serve when the user names none.
#pragma once

#include <string>

namespace dpserve {

struct ModelLocation {
  std::string model;      // HF folder, GGUF file / folder, or llama2.c checkpoint
  std::string tokenizer;  // folder or file the tokenizer loads from
  std::string why;        // one line for the log: which model and why
};

// `model_path` empty: the bundled stories260K from the shared reference data
// when present, else the small generated model the set-up wrote
// (models-generated/default). Unless `tokenizer_path` is given, a GGUF model's tokenizer is its
// own vocabulary and a llama2.c checkpoint's the tok*.bin / tokenizer.bin beside it.
ModelLocation resolve_model(const std::string& model_path, const std::string& tokenizer_path);

}  // namespace dpserve
