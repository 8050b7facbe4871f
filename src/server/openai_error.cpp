#include "server/openai_error.h"

namespace dpserve {

std::string error_type_for_status(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "invalid_request_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

ApiError::ApiError(int status, std::string message, std::string param, std::string type, std::string code)
    : std::runtime_error(std::move(message)),
      status_(status),
      param_(std::move(param)),
      type_(type.empty() ? error_type_for_status(status) : std::move(type)),
      code_(std::move(code)) {}

nlohmann::json ApiError::body() const {
  nlohmann::json e;
  e["message"] = what();
  e["type"] = type_;
  e["param"] = param_.empty() ? nlohmann::json(nullptr) : nlohmann::json(param_);
  e["code"] = code_.empty() ? nlohmann::json(nullptr) : nlohmann::json(code_);
  return nlohmann::json{{"error", e}};
}

void bad_param(const std::string& param, const std::string& message) {
  throw ApiError(400, message, param, "invalid_request_error", "invalid_value");
}

nlohmann::json error_body(int status, const std::string& message, const std::string& param,
                          const std::string& code) {
  return ApiError(status, message, param, "", code).body();
}

}  // namespace dpserve
