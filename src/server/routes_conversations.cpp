// OpenAI's Conversations API: a conversation keeps items (messages, function calls and their
// outputs, reasoning) that /v1/responses continues with `conversation` and appends each response's
// input and output items to. POST/GET/DELETE /v1/conversations[/{id}], and its items under
// /v1/conversations/{id}/items[/{item_id}]. In this process's memory (ctx.conversations: the
// stored responses' bounds), each conversation the API key's that made it.
#include <fmt/format.h>

#include "server/openai_error.h"
#include "server/request_id.h"
#include "server/request_parse.h"
#include "server/response_input_items.h"
#include "server/responses_request.h"
#include "server/route_helpers.h"
#include "server/routes.h"

namespace dpserve {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

constexpr size_t kMaxItemsAdded = 20;  // OpenAI's bound on the items one request adds

[[noreturn]] void conversation_not_found(const std::string& id) {
  throw ApiError(404, fmt::format("Conversation with id '{}' not found.", id), "conversation_id",
                 "invalid_request_error", "not_found");
}

// `items` of a request body: 1..20 input items (0..20 when `may_be_empty`), normalized as
// /v1/responses normalizes its input, each given its id.
ojson read_items(const json& body, bool may_be_empty) {
  ojson items = ojson::array();
  if (!body.contains("items") || body["items"].is_null()) {
    if (!may_be_empty) bad_param("items", "'items' is required");
    return items;
  }
  const json& in = body["items"];
  if (!in.is_array()) bad_param("items", "'items' must be an array of items");
  if ((in.empty() && !may_be_empty) || in.size() > kMaxItemsAdded)
    bad_param("items", fmt::format("'items' must hold {} to {} items", may_be_empty ? 0 : 1, kMaxItemsAdded));
  for (size_t i = 0; i < in.size(); ++i)
    items.push_back(normalize_input_item(ojson::parse(in[i].dump()), fmt::format("items[{}]", i)));
  give_item_ids(items, new_underscore_id);
  return items;
}

json read_metadata(const json& body) {
  if (!body.contains("metadata") || body["metadata"].is_null()) return json::object();
  check_metadata(body["metadata"]);
  return body["metadata"];
}

ResponseStore::Entry find_conversation(ServerContext& ctx, const std::string& id) {
  auto e = ctx.conversations.get(id, request_caller().owner);
  if (!e) conversation_not_found(id);
  return std::move(*e);
}

// The one query an item's answer takes: include=message.input_image.image_url (image URLs are null
// without it).
bool includes_image_urls(const httplib::Request& req) {
  bool image_urls = false;
  for (const auto& [k, v] : req.params) {
    if (k != "include" || v != "message.input_image.image_url") unknown_query_parameter(k);
    image_urls = true;
  }
  return image_urls;
}

// Changes a conversation in place (`fn` edits the entry); a 404 when it is gone, a 400 when the
// result outgrows the store.
void change(ServerContext& ctx, const std::string& id, const std::function<void(ResponseStore::Entry&)>& fn) {
  switch (ctx.conversations.update(id, request_caller().owner, fn)) {
    case ResponseStore::Update::kDone:
      return;
    case ResponseStore::Update::kMissing:
      conversation_not_found(id);
    case ResponseStore::Update::kTooBig:
      throw ApiError(400, "The conversation would outgrow the server's store (--max-stored-responses-mb)", "items",
                     "invalid_request_error", "conversation_too_large");
  }
}

}  // namespace

void register_conversation_routes(httplib::Server& svr, ServerContext& ctx) {
  svr.Post("/v1/conversations", [&ctx](const httplib::Request& req, httplib::Response& res) {
    reject_query_parameters(req);
    const json body = read_json_body(ctx, req, [](std::string_view k) { return k == "items" || k == "metadata"; });
    ojson items = read_items(body, true);
    const std::string id = new_underscore_id("conv");
    const json object = {
        {"id", id}, {"object", "conversation"}, {"created_at", unix_seconds()}, {"metadata", read_metadata(body)}};
    if (!ctx.conversations.put(id, ResponseStore::Entry{request_caller().owner, object, std::move(items), 0}))
      throw ApiError(400, "The conversation does not fit in the server's store (--max-stored-responses, -mb)", "items",
                     "invalid_request_error", "conversation_too_large");
    send_json(res, 200, object);
  });
  svr.Get(R"(/v1/conversations/([^/]+))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    reject_query_parameters(req);
    send_json(res, 200, find_conversation(ctx, req.matches[1]).response);
  });
  // Update: the metadata (the only field OpenAI lets change), replaced whole.
  svr.Post(R"(/v1/conversations/([^/]+))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    reject_query_parameters(req);
    const json body = read_json_body(ctx, req, [](std::string_view k) { return k == "metadata"; });
    if (!body.contains("metadata")) bad_param("metadata", "'metadata' is required");
    const json metadata = read_metadata(body);
    json object;
    change(ctx, req.matches[1], [&](ResponseStore::Entry& e) {
      e.response["metadata"] = metadata;
      object = e.response;
    });
    send_json(res, 200, object);
  });
  svr.Delete(R"(/v1/conversations/([^/]+))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    reject_query_parameters(req);
    const std::string id = req.matches[1];
    if (!ctx.conversations.erase(id, request_caller().owner)) conversation_not_found(id);
    send_json(res, 200, {{"id", id}, {"object", "conversation.deleted"}, {"deleted", true}});
  });

  svr.Get(R"(/v1/conversations/([^/]+)/items)", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const InputItemsQuery q = parse_input_items_query(req.params);
    send_json(res, 200, json::parse(list_input_items(find_conversation(ctx, req.matches[1]).conversation, q).dump()));
  });
  // Adds items at the end; the answer lists the added ones, in order.
  svr.Post(R"(/v1/conversations/([^/]+)/items)", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const bool image_urls = includes_image_urls(req);
    const json body = read_json_body(ctx, req, [](std::string_view k) { return k == "items"; });
    const ojson items = read_items(body, false);
    change(ctx, req.matches[1], [&](ResponseStore::Entry& e) {
      for (const ojson& it : items) e.conversation.push_back(it);
    });
    ojson data = ojson::array();
    for (const ojson& it : items) data.push_back(listed_item(it, image_urls));
    send_json(res, 200,
              json::parse(ojson{
                  {"object", "list"},
                  {"data", data},
                  {"first_id", items.front()["id"]},
                  {"last_id", items.back()["id"]},
                  {"has_more",
                   false}}.dump()));
  });
  svr.Get(R"(/v1/conversations/([^/]+)/items/([^/]+))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const bool image_urls = includes_image_urls(req);
    const std::string item_id = req.matches[2];
    for (const ojson& it : find_conversation(ctx, req.matches[1]).conversation)
      if (it["id"] == item_id) return send_json(res, 200, json::parse(listed_item(it, image_urls).dump()));
    throw ApiError(404, fmt::format("Item with id '{}' not found.", item_id), "item_id", "invalid_request_error",
                   "not_found");
  });
  // Deletes one item; the answer is the conversation.
  svr.Delete(R"(/v1/conversations/([^/]+)/items/([^/]+))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    reject_query_parameters(req);
    const std::string item_id = req.matches[2];
    bool found = false;
    json object;
    change(ctx, req.matches[1], [&](ResponseStore::Entry& e) {
      ojson kept = ojson::array();
      for (ojson& it : e.conversation) {
        if (it["id"] == item_id)
          found = true;
        else
          kept.push_back(std::move(it));
      }
      e.conversation = std::move(kept);
      object = e.response;
    });
    if (!found)
      throw ApiError(404, fmt::format("Item with id '{}' not found.", item_id), "item_id", "invalid_request_error",
                     "not_found");
    send_json(res, 200, object);
  });
}

}  // namespace dpserve
