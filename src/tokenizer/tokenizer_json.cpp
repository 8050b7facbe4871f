#include "tokenizer/tokenizer_json.h"

#include "core/check.h"

namespace dpserve {
namespace {

using nlohmann::json;

// A SAX handler that builds the document as nlohmann's own parser would, except inside model.vocab
// and model.merges. Why: as a document, a 150k-token vocabulary and its 150k merges are a million
// small allocations (a map node, a heap string and a json value per entry), which made loading the
// tokenizer most of a server's start-up, and ~5 s of it under AddressSanitizer.
class Reader {
 public:
  explicit Reader(TokenizerJson& out) : out_(out) {}

  bool null() { return scalar(json(nullptr), "null"); }
  bool boolean(bool v) { return scalar(json(v), "a boolean"); }
  bool number_integer(json::number_integer_t v) {
    if (mode_ == Mode::kVocab) return vocab_id(v >= 0 && v <= INT32_MAX, v);
    return scalar(json(v), "a number");
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (mode_ == Mode::kVocab) return vocab_id(v <= INT32_MAX, v <= INT32_MAX ? static_cast<int64_t>(v) : 0);
    return scalar(json(v), "a number");
  }
  bool number_float(json::number_float_t v, const json::string_t&) { return scalar(json(v), "a number"); }
  bool binary(json::binary_t&) { return error("binary values are not JSON"); }

  bool string(json::string_t& s) {
    switch (mode_) {
      case Mode::kDocument:
        return value(json(s));
      case Mode::kVocab:
        return vocab_id(false, 0);
      case Mode::kMerges: {
        const size_t sp = s.find(' ', 1);
        if (sp == std::string::npos) return error(fmt::format("model.merges: merge '{}' has no space between its tokens", s));
        out_.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
        return true;
      }
      case Mode::kMergePair:
        if (pair_len_ < 2) (pair_len_ == 0 ? pair_.first : pair_.second) = s;
        ++pair_len_;
        return true;
    }
    return true;
  }

  bool start_object(std::size_t) {
    if (mode_ != Mode::kDocument) return error(unexpected("an object"));
    if (stack_.size() == 2 && stack_.back() == model_ && key_ == "vocab") {
      mode_ = Mode::kVocab;
      out_.has_vocab = true;
      return true;
    }
    const bool is_model = stack_.size() == 1 && stack_.back()->is_object() && key_ == "model";
    json* o = place(json::object());
    if (!o) return false;
    if (is_model) model_ = o;
    stack_.push_back(o);
    return true;
  }

  bool key(json::string_t& k) {
    key_ = k;
    return true;
  }

  bool end_object() {
    if (mode_ == Mode::kVocab) {
      mode_ = Mode::kDocument;
      return true;
    }
    stack_.pop_back();
    return true;
  }

  bool start_array(std::size_t) {
    switch (mode_) {
      case Mode::kVocab:
        return vocab_id(false, 0);
      case Mode::kMerges:
        mode_ = Mode::kMergePair;
        pair_len_ = 0;
        return true;
      case Mode::kMergePair:
        return error(unexpected("an array"));
      case Mode::kDocument:
        break;
    }
    if (stack_.size() == 2 && stack_.back() == model_ && key_ == "merges") {
      mode_ = Mode::kMerges;
      out_.has_merges = true;
      return true;
    }
    json* a = place(json::array());
    if (!a) return false;
    stack_.push_back(a);
    return true;
  }

  bool end_array() {
    switch (mode_) {
      case Mode::kMergePair:
        if (pair_len_ != 2) return error(fmt::format("model.merges: merge {} is not a pair of tokens (it has {})", out_.merges.size(), pair_len_));
        out_.merges.push_back(std::move(pair_));
        pair_ = {};
        mode_ = Mode::kMerges;
        return true;
      case Mode::kMerges:
        mode_ = Mode::kDocument;
        return true;
      default:
        stack_.pop_back();
        return true;
    }
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    return error(fmt::format("not valid JSON: {}", e.what()));
  }

  const std::string& message() const { return message_; }

 private:
  enum class Mode { kDocument, kVocab, kMerges, kMergePair };

  bool error(std::string m) {
    if (message_.empty()) message_ = std::move(m);
    return false;
  }
  std::string unexpected(const char* what) const {
    return fmt::format("model.{}: {} where {} was expected", mode_ == Mode::kVocab ? "vocab" : "merges", what,
                       mode_ == Mode::kVocab ? "a token id" : "a merge");
  }
  bool vocab_id(bool ok, int64_t id) {
    if (!ok) return error(fmt::format("model.vocab: the id of '{}' is not an integer in [0, 2^31)", key_));
    out_.vocab.emplace_back(key_, static_cast<int32_t>(id));
    return true;
  }
  bool value(json v) { return place(std::move(v)) != nullptr; }
  // A value that is not a string, an object or an array: only the document and a vocab id (an
  // integer, handled before) take one.
  bool scalar(json v, const char* what) {
    if (mode_ == Mode::kDocument) return value(std::move(v));
    if (mode_ == Mode::kVocab) return vocab_id(false, 0);
    return error(unexpected(what));
  }
  // Puts v where the document is at (the root, the end of an array, or the pending key of an object).
  // Elements of an array are only ever appended to the innermost one, so the pointers kept in stack_
  // (to the open containers) stay valid.
  json* place(json v) {
    if (stack_.empty()) {
      out_.doc = std::move(v);
      return &out_.doc;
    }
    json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    json& slot = top[key_];
    slot = std::move(v);
    return &slot;
  }

  TokenizerJson& out_;
  std::vector<json*> stack_;
  json* model_ = nullptr;
  std::string key_;
  Mode mode_ = Mode::kDocument;
  std::pair<std::string, std::string> pair_;
  std::string message_;  // the first error
  size_t pair_len_ = 0;
};

}  // namespace

TokenizerJson parse_tokenizer_json(std::string_view text, std::string_view name) {
  TokenizerJson out;
  Reader reader(out);
  if (!json::sax_parse(text.data(), text.data() + text.size(), &reader)) fail("{}: {}", name, reader.message().empty() ? "not valid JSON" : reader.message());
  if (!out.doc.is_object()) fail("{}: not a JSON object", name);
  return out;
}

}  // namespace dpserve
