#include "server/anthropic_error.h"

#include <regex>

#include <fmt/format.h>

namespace dpserve {

bool is_anthropic_route(std::string_view path) {
  constexpr std::string_view kRoot = "/v1/messages";
  return path.substr(0, kRoot.size()) == kRoot && (path.size() == kRoot.size() || path[kRoot.size()] == '/');
}

bool is_anthropic_request(const httplib::Request& req) {
  constexpr std::string_view kModels = "/v1/models";
  const std::string_view path = req.path;
  const bool models =
      path.substr(0, kModels.size()) == kModels && (path.size() == kModels.size() || path[kModels.size()] == '/');
  return is_anthropic_route(path) || (models && req.has_header("anthropic-version"));
}

std::string anthropic_error_type(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503:
    case 529: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

nlohmann::json anthropic_error_body(int status, const nlohmann::json& openai_body) {
  std::string message = "HTTP " + std::to_string(status);
  if (openai_body.is_object() && openai_body.contains("error") && openai_body["error"].is_object()) {
    const auto& e = openai_body["error"];
    if (e.contains("message") && e["message"].is_string()) message = e["message"].get<std::string>();
    // Anthropic's body has no param field: a parameter the message does not name leads it, as
    // Anthropic's own messages begin with the path at fault.
    if (e.contains("param") && e["param"].is_string()) {
      const std::string param = e["param"].get<std::string>();
      if (!param.empty() && message.find(param) == std::string::npos) message = param + ": " + message;
    }
  }
  return {{"type", "error"}, {"error", {{"type", anthropic_error_type(status)}, {"message", std::move(message)}}}};
}

std::string anthropic_context_message(const std::string& message) {
  std::smatch m;
  // RequestLimits::check_prompt_length: the context, then the KV cache's bound for one sequence.
  static const std::regex kPrompt(R"(maximum context length is (\d+) tokens, but the prompt has (\d+) tokens)");
  static const std::regex kPromptKv(
      R"(The prompt has (\d+) tokens, more than this server's KV cache holds for one sequence \((\d+) positions)");
  // RequestLimits::check_max_new_tokens: prompt + the maximum beyond the context.
  static const std::regex kTotal(
      R"(maximum context length is (\d+) tokens\. However, you requested \d+ tokens )"
      R"(\((\d+) in the prompt, (\d+) for the completion\))");
  if (std::regex_search(message, m, kPrompt))
    return fmt::format("prompt is too long: {} tokens > {} maximum", m[2].str(), m[1].str());
  if (std::regex_search(message, m, kPromptKv))
    return fmt::format("prompt is too long: {} tokens > {} maximum", m[1].str(), m[2].str());
  if (std::regex_search(message, m, kTotal))
    return fmt::format("input length and `max_tokens` exceed context limit: {} + {} > {}, decrease input length or "
                       "`max_tokens` and try again",
                       m[2].str(), m[3].str(), m[1].str());
  return message;
}

void reshape_anthropic_error(const httplib::Request& req, httplib::Response& res) {
  if (res.status < 400 || !is_anthropic_request(req) || res.body.empty()) return;
  nlohmann::json body = nlohmann::json::parse(res.body, nullptr, false);
  if (!body.is_object() || !body.contains("error")) return;
  res.set_content(anthropic_error_body(res.status, body).dump(), "application/json");
}

}  // namespace dpserve
