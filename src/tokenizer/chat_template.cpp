#include "tokenizer/chat_template.h"

#include "core/check.h"
#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/interpreter.h"

namespace dpserve {

ChatTemplate::ChatTemplate(const std::string& source)
    : body_(std::make_unique<jinja::Body>(jinja::parse_template(source))) {}
ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const nlohmann::ordered_json& context) const {
  if (!context.is_object()) fail("chat template context must be a JSON object");
  return jinja::render(*body_, jinja::from_json(context));
}

std::string ChatTemplate::render(const nlohmann::json& context) const {
  if (!context.is_object()) fail("chat template context must be a JSON object");
  return jinja::render(*body_, jinja::from_json(context));
}

std::string render_chat_template(const std::string& tmpl, const nlohmann::json& context) {
  return ChatTemplate(tmpl).render(context);
}

std::string render_chat_template(const std::string& tmpl, const nlohmann::ordered_json& context) {
  return ChatTemplate(tmpl).render(context);
}

}  // namespace dpserve
