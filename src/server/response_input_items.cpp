#include "server/response_input_items.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "server/openai_error.h"

namespace dpserve {

using ojson = nlohmann::ordered_json;

namespace {

// The includables OpenAI defines for this list. Only the image URLs are something this server keeps;
// the others name tool results, encrypted reasoning or logprobs that no stored item here carries.
constexpr std::array<std::string_view, 8> kIncludables = {
    "message.input_image.image_url", "file_search_call.results",     "web_search_call.results",
    "web_search_call.action.sources", "computer_call_output.output.image_url", "code_interpreter_call.outputs",
    "reasoning.encrypted_content",   "message.output_text.logprobs",
};

// One stored item in the shape OpenAI lists it: a status on every item, content as parts.
ojson listed(const ojson& it, bool image_urls) {
  const std::string type = it["type"].get<std::string>();
  ojson out{{"id", it["id"]}, {"type", type}};
  if (type == "message") {
    const std::string role = it["role"].get<std::string>();
    const bool assistant = role == "assistant";
    out["role"] = role;
    ojson parts = ojson::array();
    auto text_part = [&](const ojson& text, const std::string& part_type) {
      ojson p{{"type", part_type}, {"text", text}};
      if (part_type == "output_text") p["annotations"] = ojson::array();
      parts.push_back(std::move(p));
    };
    const ojson& c = it["content"];
    if (c.is_string()) {
      text_part(c, assistant ? "output_text" : "input_text");
    } else {
      for (const ojson& p : c) {
        if (p["type"] == "input_image") {
          parts.push_back({{"type", "input_image"},
                           {"image_url", image_urls && p.contains("image_url") ? p["image_url"] : ojson(nullptr)},
                           {"file_id", p.contains("file_id") ? p["file_id"] : ojson(nullptr)},
                           {"detail", p.value("detail", std::string("auto"))}});
        } else {
          text_part(p["text"], p["type"].get<std::string>());
        }
      }
    }
    out["content"] = std::move(parts);
  } else if (type == "function_call") {
    for (const char* k : {"call_id", "name", "arguments"}) out[k] = it[k];
  } else if (type == "function_call_output") {
    for (const char* k : {"call_id", "output"}) out[k] = it[k];
  } else if (type == "reasoning") {
    out["summary"] = ojson::array();
    out["content"] = it["content"];
  }
  out["status"] = "completed";
  return out;
}

size_t position_of(const ojson& items, const std::string& id, const char* param) {
  for (size_t i = 0; i < items.size(); ++i)
    if (items[i].value("id", std::string()) == id) return i;
  bad_param(param, fmt::format("'{}': no item with id '{}' among this response's input items", param,
                               id.substr(0, 80)));
}

}  // namespace

InputItemsQuery parse_input_items_query(const std::multimap<std::string, std::string>& params) {
  InputItemsQuery q;
  for (const auto& [k, v] : params) {
    if (k == "limit") {
      int n = 0;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec != std::errc() || end != v.data() + v.size() || n < 1 || n > 100)
        bad_param("limit", fmt::format("'limit' must be an integer from 1 to 100; got '{}'", v.substr(0, 40)));
      q.limit = n;
    } else if (k == "order") {
      if (v != "asc" && v != "desc")
        bad_param("order", fmt::format("'order' must be 'asc' or 'desc'; got '{}'", v.substr(0, 40)));
      q.ascending = v == "asc";
    } else if (k == "after" || k == "before") {
      if (v.empty()) bad_param(k, fmt::format("'{}' must be an item id", k));
      (k == "after" ? q.after : q.before) = v;
    } else if (k == "include" || k == "include[]") {
      // The openai clients send include[]=a&include[]=b; a bare include=a is read the same way.
      if (v == "message.input_image.image_url") {
        q.image_urls = true;
      } else if (std::find(kIncludables.begin(), kIncludables.end(), v) != kIncludables.end()) {
        throw ApiError(400,
                       fmt::format("'include' value '{}' is not supported by this server: it keeps no tool results, "
                                   "encrypted reasoning or logprobs (only message.input_image.image_url is honoured)",
                                   v),
                       "include", "invalid_request_error", "unsupported_parameter");
      } else {
        bad_param("include", fmt::format("'include' value '{}' is not one OpenAI defines", v.substr(0, 80)));
      }
    } else {
      throw ApiError(400, fmt::format("Unrecognized request argument supplied: {}", k.substr(0, 80)), k, "",
                     "unknown_parameter");
    }
  }
  return q;
}

void give_item_ids(ojson& items, const std::function<std::string(const char*)>& new_id) {
  for (ojson& it : items) {
    if (it.contains("id") && it["id"].is_string()) continue;
    const std::string type = it.value("type", std::string("message"));
    const char* prefix = type == "function_call"          ? "fc"
                         : type == "function_call_output" ? "fco"
                         : type == "reasoning"            ? "rs"
                                                          : "msg";
    it["id"] = new_id(prefix);
  }
}

ojson listed_item(const ojson& item, bool image_urls) { return listed(item, image_urls); }

ojson list_input_items(const ojson& items, const InputItemsQuery& q) {
  // Positions in the requested order: asc is the order the items were sent in.
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = q.ascending ? i : order.size() - 1 - i;
  auto rank_of = [&](size_t pos) { return q.ascending ? pos : order.size() - 1 - pos; };
  size_t begin = 0, end = order.size();  // a window of `order`
  if (!q.after.empty()) begin = rank_of(position_of(items, q.after, "after")) + 1;
  if (!q.before.empty()) end = rank_of(position_of(items, q.before, "before"));
  if (end < begin) end = begin;  // after lies past before: nothing between them
  // With only `before`, the page is the `limit` items just before it (the cursor walks backwards).
  size_t first = begin, last = std::min(end, begin + size_t(q.limit));
  if (q.after.empty() && !q.before.empty()) {
    first = end - std::min(end - begin, size_t(q.limit));
    last = end;
  }
  ojson data = ojson::array();
  for (size_t r = first; r < last; ++r) data.push_back(listed(items[order[r]], q.image_urls));
  const bool has_more = (q.after.empty() && !q.before.empty()) ? first > begin : last < end;
  ojson out{{"object", "list"}, {"data", data}};
  out["first_id"] = data.empty() ? ojson(nullptr) : data.front()["id"];
  out["last_id"] = data.empty() ? ojson(nullptr) : data.back()["id"];
  out["has_more"] = has_more;
  return out;
}

}  // namespace dpserve
