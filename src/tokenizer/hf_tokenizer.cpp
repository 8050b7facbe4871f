#include "tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/mapped_file.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/encode_turn.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/token_decoder.h"
#include "tokenizer/tokenizer_json.h"
#include "tokenizer/utf8.h"

namespace dpserve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json read_json(const fs::path& p, bool required) {
  std::ifstream f(p, std::ios::binary);
  if (!f) {
    if (required) fail("{}: cannot open", p.string());
    return nullptr;
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", p.string(), e.what());
  }
}

// "bos_token": "<s>" or {"content": "<s>", ...}
std::optional<std::string> token_text(const json& cfg, const char* key) {
  if (!cfg.is_object() || !cfg.contains(key)) return std::nullopt;
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

class HfTokenizerImpl final : public Tokenizer {
 public:
  explicit HfTokenizerImpl(const std::string& json_path) {
    const fs::path path(json_path);
    const fs::path dir = path.parent_path();
    TokenizerJson tj = [&] {
      const MappedFile f(path.string());
      return parse_tokenizer_json({reinterpret_cast<const char*>(f.data()), f.size()}, path.string());
    }();
    try {
      build(tj);
      configure(read_json(dir / "tokenizer_config.json", false), read_json(dir / "special_tokens_map.json", false),
                read_json(dir / "generation_config.json", false));
      read_template_files(dir);
    } catch (const json::exception& e) {
      fail("{}: unexpected tokenizer layout: {}", json_path, e.what());
    } catch (const Error& e) {
      fail("{}: {}", json_path, e.what());
    }
  }

  explicit HfTokenizerImpl(HfTokenizerParts p) {
    normalizer_ = Normalizer::from_json(p.normalizer);
    pre_ = PreTokenizer::from_json(p.pre_tokenizer);
    decoder_ = TokenDecoder::from_json(p.decoder);
    model_ = std::move(p.model);
    DP_CHECK(model_ != nullptr);
    vocab_size_ = model_->size();
    for (const AddedToken& t : p.added) add_token(t);
    for (auto* ids : {&p.prefix, &p.suffix, &p.eos_ids})
      for (int32_t id : *ids)
        if (id < 0 || id >= vocab_size_) fail("special token id {} is outside the vocabulary [0, {})", id, vocab_size_);
    if (p.bos_id >= vocab_size_) fail("BOS id {} is outside the vocabulary [0, {})", p.bos_id, vocab_size_);
    prefix_ = std::move(p.prefix);
    suffix_ = std::move(p.suffix);
    bos_id_ = p.bos_id;
    if (bos_id_ >= 0) bos_token_ = id_to_piece(bos_id_);
    eos_ids_ = std::move(p.eos_ids);
    if (!eos_ids_.empty()) eos_token_ = id_to_piece(eos_ids_[0]);
    chat_template_ = std::move(p.chat_template);
  }

  std::vector<int32_t> encode(std::string_view raw, bool add_special_tokens) const override {
    const EncodeTurn turn(raw.size());  // a large text waits for its share of memory (encode_turn.h)
    const std::string text = utf8::repair(raw);
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    for (const auto& seg : added_.split(text, false)) {
      if (seg.id >= 0) {
        ids.push_back(seg.id);
        continue;
      }
      const bool at_start = seg.text.data() == text.data();
      const std::string normalized = normalizer_.apply(std::string(seg.text));
      for (const auto& part : has_normalized_added_ ? added_.split(normalized, true)
                                                    : std::vector<AddedTokens::Segment>{{normalized, -1}}) {
        if (part.id >= 0) {
          ids.push_back(part.id);
          continue;
        }
        // Each word is encoded as it is made: a long text's words are never all held at once.
        pre_.for_each_word(part.text, at_start && part.text.data() == normalized.data(),
                           [&](std::string& w) { model_->encode_word(w, ids); });
      }
    }
    if (add_special_tokens) {
      ids.insert(ids.begin(), prefix_.begin(), prefix_.end());
      ids.insert(ids.end(), suffix_.begin(), suffix_.end());
    }
    return ids;
  }

  int32_t bos_id() const override { return bos_id_; }
  std::vector<int32_t> eos_ids() const override { return eos_ids_; }
  int64_t vocab_size() const override { return vocab_size_; }
  std::optional<std::string> chat_template() const override { return chat_template_; }

  std::string id_to_piece(int32_t id) const override {
    if (auto it = added_by_id_.find(id); it != added_by_id_.end()) return it->second.content;
    if (id >= 0 && id < model_->size()) return model_->id_to_token(id);
    return "";
  }
  int32_t piece_to_id(std::string_view piece) const override {
    for (const auto& t : added_.tokens()) {
      if (t.content == piece) return t.id;
    }
    return model_->token_to_id(piece);
  }
  bool is_special(int32_t id) const override {
    auto it = added_by_id_.find(id);
    return it != added_by_id_.end() && it->second.special;
  }
  std::string token_bytes(int32_t id) const override {
    if (auto it = added_by_id_.find(id); it != added_by_id_.end()) return it->second.content;
    if (id < 0 || id >= model_->size()) return "";
    const std::string& piece = model_->id_to_token(id);
    if (decoder_.steps().empty()) return " " + piece;  // no decoder: HF joins tokens with spaces
    return decoder_.raw_bytes(piece);
  }
  std::string bos_token() const override { return bos_token_; }
  std::string eos_token() const override { return eos_token_; }

  std::unique_ptr<DecodeStream> decode_stream(bool skip_special_tokens) const override {
    return std::make_unique<Stream>(*this, skip_special_tokens);
  }

 private:
  class Stream final : public DecodeStream {
   public:
    Stream(const HfTokenizerImpl& t, bool skip) : t_(t), skip_(skip), state_(t.decoder_) {}
    void push(int32_t id, std::string& out) override {
      if (id < 0 || id >= t_.vocab_size_) fail("token id {} is out of range [0, {})", id, t_.vocab_size_);
      if (skip_ && t_.is_special(id)) return;
      std::string piece = t_.id_to_piece(id);
      if (t_.decoder_.steps().empty() && !first_) piece.insert(piece.begin(), ' ');  // no decoder: HF joins with spaces
      first_ = false;
      state_.push(piece, out);
    }
    void finish(std::string& out) override { state_.finish(out); }

   private:
    const HfTokenizerImpl& t_;
    bool skip_;
    bool first_ = true;
    TokenDecoder::State state_;
  };

  void build(TokenizerJson& file) {
    const json& tj = file.doc;
    normalizer_ = Normalizer::from_json(tj.value("normalizer", json(nullptr)));
    pre_ = PreTokenizer::from_json(tj.value("pre_tokenizer", json(nullptr)));
    model_ = std::make_unique<BpeModel>(tj.at("model"), std::move(file.vocab), file.merges, pre_.byte_level());
    file.merges = {};
    decoder_ = TokenDecoder::from_json(tj.value("decoder", json(nullptr)));
    vocab_size_ = model_->size();
    if (tj.contains("added_tokens") && tj["added_tokens"].is_array()) {
      for (const auto& a : tj["added_tokens"]) {
        AddedToken t;
        t.id = a.at("id").get<int32_t>();
        t.content = a.at("content").get<std::string>();
        t.special = a.value("special", false);
        t.normalized = a.value("normalized", !t.special);
        t.lstrip = a.value("lstrip", false);
        t.rstrip = a.value("rstrip", false);
        t.single_word = a.value("single_word", false);
        add_token(t);
      }
    }
    parse_post_processor(tj.value("post_processor", json(nullptr)));
  }

  void add_token(const AddedToken& t) {
    if (t.id < 0) fail("added token '{}' has a negative id", t.content);
    added_.add(t);
    added_by_id_[t.id] = t;
    has_normalized_added_ = has_normalized_added_ || t.normalized;
    vocab_size_ = std::max<int64_t>(vocab_size_, t.id + 1);
  }

  void parse_post_processor(const json& p) {
    if (p.is_null()) return;
    const std::string type = p.value("type", "");
    if (type == "Sequence") {
      for (const auto& q : p.at("processors")) parse_post_processor(q);
    } else if (type == "ByteLevel") {
      // offsets only
    } else if (type == "TemplateProcessing") {
      has_template_ = true;
      const auto& specials = p.at("special_tokens");
      bool seen_seq = false;
      for (const auto& item : p.at("single")) {
        if (item.contains("Sequence")) {
          seen_seq = true;
        } else if (item.contains("SpecialToken")) {
          const std::string name = item["SpecialToken"].at("id").get<std::string>();
          if (!specials.contains(name)) fail("post_processor: unknown special token '{}'", name);
          for (const auto& id : specials[name].at("ids")) (seen_seq ? suffix_ : prefix_).push_back(id.get<int32_t>());
        }
      }
    } else if (type == "BertProcessing" || type == "RobertaProcessing") {
      has_template_ = true;
      prefix_.push_back(p.at("cls").at(1).get<int32_t>());
      suffix_.push_back(p.at("sep").at(1).get<int32_t>());
    } else {
      fail("post_processor type '{}' is not supported", type);
    }
  }

  int32_t id_of(const std::string& content) const {
    const int32_t id = piece_to_id(content);
    if (id < 0) fail("special token '{}' is not in the vocabulary", content);
    return id;
  }

  void configure(const json& cfg, const json& stm, const json& gen) {
    if (auto b = token_text(cfg, "bos_token").value_or(token_text(stm, "bos_token").value_or("")); !b.empty()) {
      bos_token_ = b;
      bos_id_ = id_of(b);
    }
    if (auto e = token_text(cfg, "eos_token").value_or(token_text(stm, "eos_token").value_or("")); !e.empty()) {
      eos_token_ = e;
      eos_ids_.push_back(id_of(e));
    }
    if (gen.is_object()) {
      if (gen.contains("bos_token_id") && gen["bos_token_id"].is_number_integer() && bos_id_ < 0) {
        bos_id_ = gen["bos_token_id"].get<int32_t>();
        bos_token_ = id_to_piece(bos_id_);
      }
      if (gen.contains("eos_token_id")) {
        const json& e = gen["eos_token_id"];
        std::vector<int32_t> ids;
        if (e.is_number_integer()) ids.push_back(e.get<int32_t>());
        if (e.is_array()) {
          for (const auto& x : e) ids.push_back(x.get<int32_t>());
        }
        for (int32_t id : ids) {
          if (std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) eos_ids_.push_back(id);
        }
        if (eos_token_.empty() && !eos_ids_.empty()) eos_token_ = id_to_piece(eos_ids_[0]);
      }
    }
    // transformers adds BOS/EOS itself when tokenizer.json has no template doing it.
    if (!has_template_ && cfg.is_object()) {
      if (cfg.value("add_bos_token", false) && bos_id_ >= 0) prefix_.push_back(bos_id_);
      if (cfg.value("add_eos_token", false) && !eos_ids_.empty()) suffix_.push_back(eos_ids_[0]);
    }
    if (cfg.is_object() && cfg.contains("chat_template")) {
      const json& ct = cfg["chat_template"];
      if (ct.is_string()) {
        chat_template_ = ct.get<std::string>();
      } else if (ct.is_array()) {  // [{"name": "default", "template": ...}, ...]
        for (const auto& t : ct) {
          if (t.value("name", "") == "default") chat_template_ = t.at("template").get<std::string>();
        }
        if (!chat_template_ && !ct.empty()) chat_template_ = ct[0].at("template").get<std::string>();
      }
    }
  }

  // Where transformers (4.47 on) saves the template: chat_template.jinja beside tokenizer_config.json,
  // which then holds none; when both are there the file wins, as transformers reads them. A
  // processor's chat_template.json ({"chat_template": ...}, older vision models) is the template only
  // when nothing else gives one (vLLM reads the processor's template too).
  void read_template_files(const fs::path& dir) {
    if (std::ifstream f(dir / "chat_template.jinja", std::ios::binary); f) {
      std::ostringstream ss;
      ss << f.rdbuf();
      chat_template_ = ss.str();
      return;
    }
    if (chat_template_) return;
    const json pj = read_json(dir / "chat_template.json", false);
    if (pj.is_object() && pj.contains("chat_template") && pj["chat_template"].is_string())
      chat_template_ = pj["chat_template"].get<std::string>();
  }

  Normalizer normalizer_;
  PreTokenizer pre_;
  std::unique_ptr<BpeModel> model_;
  TokenDecoder decoder_;
  AddedTokens added_;
  std::unordered_map<int32_t, AddedToken> added_by_id_;
  bool has_normalized_added_ = false;
  bool has_template_ = false;
  std::vector<int32_t> prefix_, suffix_;
  int64_t vocab_size_ = 0;
  int32_t bos_id_ = -1;
  std::vector<int32_t> eos_ids_;
  std::string bos_token_, eos_token_;
  std::optional<std::string> chat_template_;
};

}  // namespace

std::unique_ptr<Tokenizer> HfTokenizer::load(const std::string& json_path) {
  return std::make_unique<HfTokenizerImpl>(json_path);
}

std::unique_ptr<Tokenizer> HfTokenizer::from_parts(HfTokenizerParts parts) {
  try {
    return std::make_unique<HfTokenizerImpl>(std::move(parts));
  } catch (const json::exception& e) {
    fail("unexpected tokenizer layout: {}", e.what());
  }
}

}  // namespace dpserve
