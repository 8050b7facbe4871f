#include "server/anthropic_list.h"

#include <algorithm>
#include <ctime>

#include <fmt/format.h>

#include "server/openai_error.h"
#include "server/route_helpers.h"

namespace dpserve {

using json = nlohmann::json;

json anthropic_page(const std::vector<std::string>& ids, const std::function<json(size_t)>& element,
                    const httplib::Request& req, const char* what) {
  std::string before, after;
  int64_t limit = 20;
  for (const auto& [k, v] : req.params) {
    if (k == "before_id") {
      before = v;
    } else if (k == "after_id") {
      after = v;
    } else if (k == "limit") {
      limit = query_integer(k, v, 1, 1000);
    } else {
      unknown_query_parameter(k);
    }
  }
  if (!before.empty() && !after.empty()) bad_param("before_id", "before_id and after_id cannot both be given");
  auto index_of = [&](const std::string& id, const char* param) {
    auto it = std::find(ids.begin(), ids.end(), id);
    if (it == ids.end()) bad_param(param, fmt::format("No {} with id {}", what, id));
    return size_t(it - ids.begin());
  };
  // after_id: the page after that element; before_id: the page just before it.
  size_t from = 0, to = ids.size();
  if (!after.empty()) from = index_of(after, "after_id") + 1;
  if (!before.empty()) {
    to = index_of(before, "before_id");
    from = to - std::min<size_t>(to, size_t(limit));
  }
  json data = json::array();
  for (size_t i = from; i < to && int64_t(data.size()) < limit; ++i) data.push_back(element(i));
  const bool more = before.empty() ? from + data.size() < ids.size() : from > 0;
  return {{"data", data},
          {"has_more", more},
          {"first_id", data.empty() ? json(nullptr) : data.front()["id"]},
          {"last_id", data.empty() ? json(nullptr) : data.back()["id"]}};
}

std::string rfc3339(int64_t unix_s) {
  const std::time_t t = unix_s;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace dpserve
