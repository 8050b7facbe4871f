// OpenAI's stored chat completions: a chat completion created with `store: true` is kept (in
// ctx.chat_completions: the stored responses' bounds, each the API key's that made it) for
// GET /v1/chat/completions (list: model, metadata[k], after, limit, order),
// GET / POST (metadata) / DELETE /v1/chat/completions/{id} and its request's messages at
// GET /v1/chat/completions/{id}/messages.
#include <algorithm>

#include <fmt/format.h>

#include "server/openai_error.h"
#include "server/request_parse.h"
#include "server/route_helpers.h"
#include "server/routes.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

[[noreturn]] void completion_not_found(const std::string& id) {
  throw ApiError(
      404, fmt::format("No chat completion found with id '{}' (only those created with store: true are kept)", id),
      "completion_id", "invalid_request_error", "not_found");
}

ResponseStore::Entry find_stored_completion(ServerContext& ctx, const std::string& id) {
  auto e = ctx.chat_completions.get(id, request_caller().owner);
  if (!e) completion_not_found(id);
  return std::move(*e);
}

// A request message as OpenAI lists a stored completion's messages: its text as `content` and, when
// it came as parts, the parts as `content_parts`.
json listed_message(const nlohmann::ordered_json& m, const std::string& completion_id, size_t index) {
  json out = json::parse(m.dump());
  out["id"] = fmt::format("{}-{}", completion_id, index);
  const json content = out.value("content", json());
  out["content_parts"] = nullptr;
  if (content.is_array()) {
    std::string text;
    for (const json& p : content)
      if (p.value("type", "") == "text" && p.contains("text") && p["text"].is_string())
        text += p["text"].get<std::string>();
    out["content"] = text;
    out["content_parts"] = content;
  }
  return out;
}

}  // namespace

void register_stored_chat_routes(httplib::Server& svr, ServerContext& ctx) {
  svr.Get("/v1/chat/completions", [&ctx](const httplib::Request& req, httplib::Response& res) {
    std::string model;
    std::map<std::string, std::string> wanted;  // metadata[k] = v
    const ListPage p = read_list_page(req, {}, 100, [&](const std::string& k, const std::string& v) {
      if (k == "model") {
        model = v;
      } else if (k.size() > 10 && k.rfind("metadata[", 0) == 0 && k.back() == ']') {
        wanted[k.substr(9, k.size() - 10)] = v;
      } else {
        return false;
      }
      return true;
    });
    std::vector<json> all;
    for (const std::string& id : ctx.chat_completions.ids(request_caller().owner)) {
      auto e = ctx.chat_completions.get(id, request_caller().owner, false);
      if (!e || (!model.empty() && e->response.value("model", "") != model)) continue;
      const json& meta = e->response["metadata"];
      if (std::all_of(wanted.begin(), wanted.end(),
                      [&](const auto& kv) { return meta.contains(kv.first) && meta[kv.first] == kv.second; }))
        all.push_back(std::move(e->response));
    }
    send_json(res, 200, list_page(std::move(all), p, [](const json& c) { return c["id"].get<std::string>(); },
                                  "chat completion"));
  });
  svr.Get(R"(/v1/chat/completions/([^/]+))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    reject_query_parameters(req);
    send_json(res, 200, find_stored_completion(ctx, req.matches[1]).response);
  });
  // Only the metadata changes (OpenAI's update); null clears it.
  svr.Post(R"(/v1/chat/completions/([^/]+))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    reject_query_parameters(req);
    const json body = read_json_body(ctx, req, [](std::string_view k) { return k == "metadata"; });
    if (!body.contains("metadata")) bad_param("metadata", "'metadata' is required (null clears it)");
    json metadata = body["metadata"].is_null() ? json::object() : body["metadata"];
    check_metadata(metadata);
    const std::string id = req.matches[1];
    json out;
    const auto r = ctx.chat_completions.update(id, request_caller().owner, [&](ResponseStore::Entry& e) {
      e.response["metadata"] = metadata;
      out = e.response;
    });
    if (r == ResponseStore::Update::kMissing) completion_not_found(id);
    if (r == ResponseStore::Update::kTooBig)
      throw ApiError(400, "The completion would outgrow the server's store (--max-stored-responses-mb)", "metadata",
                     "invalid_request_error", "too_large");
    send_json(res, 200, out);
  });
  svr.Delete(R"(/v1/chat/completions/([^/]+))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    reject_query_parameters(req);
    const std::string id = req.matches[1];
    if (!ctx.chat_completions.erase(id, request_caller().owner)) completion_not_found(id);
    send_json(res, 200, {{"object", "chat.completion.deleted"}, {"id", id}, {"deleted", true}});
  });
  svr.Get(R"(/v1/chat/completions/([^/]+)/messages)", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const ListPage p = read_list_page(req, {}, 100, [](const std::string&, const std::string&) { return false; });
    const std::string id = req.matches[1];
    const ResponseStore::Entry e = find_stored_completion(ctx, id);
    std::vector<json> all;
    for (size_t i = 0; i < e.conversation.size(); ++i) all.push_back(listed_message(e.conversation[i], id, i));
    send_json(res, 200, list_page(std::move(all), p, [](const json& m) { return m["id"].get<std::string>(); },
                                  "message"));
  });
}

}  // namespace dpserve
