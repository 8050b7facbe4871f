// Hugging Face `decoder` pipelines (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace,
// Sequence) run as a stream over token strings, ending in a lossy UTF-8 sink.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/utf8.h"

namespace dpserve {

class TokenDecoder {
 public:
  enum class Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace };
  struct Step {
    Kind kind;
    std::string a, b;  // Replace: pattern -> content; Strip: content; Metaspace: replacement
    int start = 0, stop = 0;
  };

  // `j` is tokenizer.json's "decoder" (null gives plain concatenation). Unknown types throw.
  static TokenDecoder from_json(const nlohmann::json& j);
  static TokenDecoder from_steps(std::vector<Step> steps);

  class State {
   public:
    explicit State(const TokenDecoder& d);
    void push(const std::string& token, std::string& out);
    void finish(std::string& out);

   private:
    void run(size_t step, std::string tok, std::string& out);
    void flush_from(size_t step, std::string& out);
    const TokenDecoder& d_;
    std::vector<std::string> byte_runs_;  // per ByteFallback step: pending raw bytes
    std::vector<int> strip_left_;         // per fused Strip step: leading chars still to strip
    std::vector<std::string> strip_held_;  // per fused Strip step: held trailing content chars
    size_t index_ = 0;                    // token index (Metaspace strips on the first)
    utf8::Sink sink_;
  };

  const std::vector<Step>& steps() const { return steps_; }
  // One token's raw bytes in the middle of a text: the per-token steps without the UTF-8 repair
  // and without what only acts at the start or end of the whole text (Metaspace's first-token
  // strip, Strip after Fuse).
  std::string raw_bytes(std::string token) const;

 private:
  std::vector<Step> steps_;
  std::vector<bool> fused_;  // step i runs after a Fuse (acts on the whole text, not per token)
};

}  // namespace dpserve
