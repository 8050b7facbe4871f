#include "server/auth.h"

#include <cctype>

namespace dpserve {

namespace {

// Compares in time that depends on the lengths only, so a key cannot be guessed a byte at a time
// from response timings.
bool same_key(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

std::optional<std::string> bearer_token(const httplib::Request& req) {
  // Anthropic's clients send the key as X-Api-Key; the Authorization header wins when both come.
  if (!req.has_header("Authorization") && req.has_header("X-Api-Key")) return req.get_header_value("X-Api-Key");
  const std::string h = req.get_header_value("Authorization");
  static constexpr char kScheme[] = "bearer";
  if (h.size() <= 6 || h[6] != ' ') return std::nullopt;
  for (size_t i = 0; i < 6; ++i)
    if (std::tolower(static_cast<unsigned char>(h[i])) != kScheme[i]) return std::nullopt;
  size_t at = 6;
  while (at < h.size() && h[at] == ' ') ++at;
  return h.substr(at);
}

Auth::Auth(std::vector<std::string> api_keys, std::string admin_key)
    : api_keys_(std::move(api_keys)), admin_key_(std::move(admin_key)) {
  std::erase(api_keys_, std::string());
}

std::optional<Caller> Auth::authenticate(const httplib::Request& req, bool exempt_route) const {
  const std::optional<std::string> token = bearer_token(req);
  if (token && has_admin_key() && same_key(*token, admin_key_)) return Caller{"", true};
  if (api_keys_.empty()) return Caller{};
  bool found = false;
  std::string owner;
  if (token)
    for (const auto& k : api_keys_)
      if (same_key(*token, k)) {  // every key is compared, whichever matches
        found = true;
        owner = k;
      }
  if (found) return Caller{owner, false};
  if (exempt_route) return Caller{};
  return std::nullopt;
}

}  // namespace dpserve
