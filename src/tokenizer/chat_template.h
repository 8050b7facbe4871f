// Renders a model's Jinja chat template (tokenizer_config.json "chat_template") for a conversation,
// byte for byte as transformers' apply_chat_template does with Jinja2.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace dpserve {

namespace jinja {
struct Stmt;
}

// Parse once, render many times. Unsupported constructs throw dpserve::Error naming them.
class ChatTemplate {
 public:
  explicit ChatTemplate(const std::string& source);
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  // context: {"messages": [...], "add_generation_prompt": true, "tools": [...], "bos_token": ..., ...}.
  // ordered_json keeps the caller's key order, which tojson output depends on (as Python dicts do).
  std::string render(const nlohmann::ordered_json& context) const;
  std::string render(const nlohmann::json& context) const;

 private:
  std::unique_ptr<std::vector<std::unique_ptr<jinja::Stmt>>> body_;
};

std::string render_chat_template(const std::string& tmpl, const nlohmann::json& context);
std::string render_chat_template(const std::string& tmpl, const nlohmann::ordered_json& context);

}  // namespace dpserve
