#include "tokenizer/hf_tokenizer.h"

#include "core/check.h"

namespace dpserve {
std::unique_ptr<Tokenizer> HfTokenizer::load(const std::string& json_path) {
  fail("{}: tokenizer.json support is not built yet", json_path);
}
}  // namespace dpserve
