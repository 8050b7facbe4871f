// OpenAI-style error responses: {"error": {"message", "type", "param", "code"}}, thrown by request
// handling as ApiError and turned into the HTTP reply in one place.
#pragma once

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace dpserve {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = "", std::string type = "",
           std::string code = "");

  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& type() const { return type_; }
  const std::string& code() const { return code_; }
  nlohmann::json body() const;

 private:
  int status_;
  std::string param_, type_, code_;
};

// A 400 naming the parameter at fault.
[[noreturn]] void bad_param(const std::string& param, const std::string& message);

// The JSON body for an error that did not come through ApiError (404 route, 413 body, ...).
nlohmann::json error_body(int status, const std::string& message, const std::string& param = "",
                          const std::string& code = "");

// OpenAI's "type" for a status: invalid_request_error, authentication_error, ...
std::string error_type_for_status(int status);

}  // namespace dpserve
