#include "bench_client/server_metrics.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <sstream>

namespace dpserve::bench {

std::optional<SpecCounters> parse_spec_counters(const std::string& text) {
  SpecCounters c;
  int found = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.find(' ');
    if (sp == std::string::npos) continue;
    const std::string name = line.substr(0, sp);
    double* dst = name == "dpserve_spec_draft_tokens_total"      ? &c.draft_tokens
                  : name == "dpserve_spec_accepted_tokens_total" ? &c.accepted_tokens
                  : name == "dpserve_spec_verify_steps_total"    ? &c.verify_steps
                                                                 : nullptr;
    if (!dst) continue;
    char* end = nullptr;
    const std::string v = line.substr(sp + 1);
    *dst = std::strtod(v.c_str(), &end);
    if (end == v.c_str()) return std::nullopt;
    ++found;
  }
  if (found != 3) return std::nullopt;
  return c;
}

std::optional<SpecCounters> read_spec_counters(const std::string& base_url, const std::string& api_key,
                                               double timeout_s) {
  const size_t sep = base_url.find("://");
  if (sep == std::string::npos) return std::nullopt;
  const size_t slash = base_url.find('/', sep + 3);
  std::string prefix = slash == std::string::npos ? "" : base_url.substr(slash);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  httplib::Client cli(base_url.substr(0, slash));
  const auto to = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::duration<double>(std::clamp(timeout_s, 0.001, 10.0)));
  cli.set_connection_timeout(std::min<std::chrono::microseconds>(to, std::chrono::seconds(5)));
  cli.set_read_timeout(to);
  httplib::Headers h;
  if (!api_key.empty()) h.emplace("Authorization", "Bearer " + api_key);
  auto res = cli.Get(prefix + "/metrics", h);
  if (!res || res->status != 200) return std::nullopt;
  return parse_spec_counters(res->body);
}

}  // namespace dpserve::bench
