#include "server/stop_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdexcept>

#include <fmt/format.h>

namespace dpserve {

StopRegex::StopRegex(const std::vector<std::string>& patterns) : patterns_(patterns) {
  for (size_t i = 0; i < patterns_.size(); ++i) {
    int err = 0;
    PCRE2_SIZE at = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(patterns_[i].data()), patterns_[i].size(),
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &at, nullptr);
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      for (void* c : codes_) pcre2_code_free(static_cast<pcre2_code*>(c));
      codes_.clear();
      throw std::invalid_argument(fmt::format("pattern {} ({:?}) is not a valid regular expression: {} at offset {}",
                                              i, patterns_[i].substr(0, 200), reinterpret_cast<const char*>(msg), at));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // the interpreter runs it where JIT is unavailable
    codes_.push_back(code);
  }
}

StopRegex::~StopRegex() {
  for (void* c : codes_) pcre2_code_free(static_cast<pcre2_code*>(c));
}

std::optional<std::string> StopRegex::search(std::string_view text) const {
  for (size_t i = 0; i < codes_.size(); ++i) {
    auto* code = static_cast<pcre2_code*>(codes_[i]);
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
    // A multi-byte character may still be split across tokens: PCRE2_MATCH_INVALID_UTF (compile
    // time) lets an invalid sequence simply not match, instead of failing the whole search.
    const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, 0, md, nullptr);
    pcre2_match_data_free(md);
    if (rc >= 0) return patterns_[i];
  }
  return std::nullopt;
}

}  // namespace dpserve
