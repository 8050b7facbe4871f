#include "server/anthropic_error.h"

namespace dpserve {

bool is_anthropic_route(std::string_view path) {
  constexpr std::string_view kRoot = "/v1/messages";
  return path.substr(0, kRoot.size()) == kRoot && (path.size() == kRoot.size() || path[kRoot.size()] == '/');
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

void reshape_anthropic_error(const httplib::Request& req, httplib::Response& res) {
  if (res.status < 400 || !is_anthropic_route(req.path) || res.body.empty()) return;
  nlohmann::json body = nlohmann::json::parse(res.body, nullptr, false);
  if (!body.is_object() || !body.contains("error")) return;
  res.set_content(anthropic_error_body(res.status, body).dump(), "application/json");
}

}  // namespace dpserve
