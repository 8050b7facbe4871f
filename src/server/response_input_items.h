// GET /v1/responses/{id}/input_items: the items a stored response was generated from (the conversation
// it continued, then its own input; `instructions` are a field of the Response, not an item), listed in
// OpenAI's shape ({"object": "list", "data", "first_id", "last_id", "has_more"}) and paged by
// limit / order / after / before.
#pragma once

#include <functional>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace dpserve {

struct InputItemsQuery {
  int limit = 20;           // 1..100
  bool ascending = false;   // OpenAI's default order is desc: the newest item first
  std::string after, before;  // item ids; "" when absent
  bool image_urls = false;  // include=message.input_image.image_url
};

// The query string -> the query; a 400 naming the parameter for a bad value, an unknown parameter
// or an `include` value this server cannot honour.
InputItemsQuery parse_input_items_query(const std::multimap<std::string, std::string>& params);

// Gives every item without an "id" one of its kind (msg_, fc_, fco_, rs_) from `new_id(prefix)`:
// ids are what the list pages by, and they stay with an item along a previous_response_id chain.
void give_item_ids(nlohmann::ordered_json& items, const std::function<std::string(const char*)>& new_id);

// One stored item as a list shows it (OpenAI's item shape; image URLs only with `image_urls`).
nlohmann::ordered_json listed_item(const nlohmann::ordered_json& item, bool image_urls);

// One page of `items` (stored, normalized items with ids) as the list object; a 400 naming
// after / before when that id is not among them.
nlohmann::ordered_json list_input_items(const nlohmann::ordered_json& items, const InputItemsQuery& q);

}  // namespace dpserve
