// Anthropic's list pages (Message Batches, Models): `before_id` / `after_id` / `limit` over the
// elements in the list's order, answered as {"data", "has_more", "first_id", "last_id"}; and its
// timestamps, RFC 3339 in UTC.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

namespace dpserve {

// One page of the list whose elements have these `ids` (in the list's order) by the request's query:
// after_id (the elements after it), before_id (the page just before it), limit 1-1000 (20). Another
// parameter, both ids, or an id not in the list is a 400 naming it; `what` names an element in that
// message ("Message Batch"). Only the page's elements are built (`element(i)`: the i-th).
nlohmann::json anthropic_page(const std::vector<std::string>& ids, const std::function<nlohmann::json(size_t)>& element,
                              const httplib::Request& req, const char* what);

std::string rfc3339(int64_t unix_s);

}  // namespace dpserve
