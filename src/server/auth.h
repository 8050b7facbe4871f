// Who sent a request: none of the configured API keys (refused when keys are required), one of
// them, or the admin key. The key a request was admitted with names its owner: /abort_request acts
// only on the caller's own requests unless the caller holds the admin key.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <httplib.h>

namespace dpserve {

struct Caller {
  std::string owner;   // the API key it came with ("" when the server requires none)
  bool admin = false;  // it came with --admin-api-key
};

class Auth {
 public:
  Auth(std::vector<std::string> api_keys, std::string admin_key);

  // The caller, or nullopt when the route needs a key and the request has no valid one.
  std::optional<Caller> authenticate(const httplib::Request& req, bool exempt_route) const;
  bool keys_required() const { return !api_keys_.empty(); }
  bool has_admin_key() const { return !admin_key_.empty(); }

 private:
  std::vector<std::string> api_keys_;
  std::string admin_key_;
};

// The client's key: the token of "Authorization: Bearer <token>" (the scheme in any case, RFC 9110
// 11.1), else the X-Api-Key header's value (Anthropic's clients), or nullopt.
std::optional<std::string> bearer_token(const httplib::Request& req);

}  // namespace dpserve
