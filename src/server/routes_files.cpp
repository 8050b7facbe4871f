// OpenAI Files API, for the Batch API's inputs and outputs: POST /v1/files (multipart upload,
// purpose "batch"), GET /v1/files (list), GET /v1/files/{id}, GET /v1/files/{id}/content and
// DELETE /v1/files/{id}, on the bounded in-memory FileStore.
#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include "server/body_fields.h"
#include "server/http_connection.h"
#include "server/multipart.h"
#include "server/openai_error.h"
#include "server/request_id.h"
#include "server/route_helpers.h"
#include "server/routes.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

[[noreturn]] void file_not_found(const std::string& id) {
  throw ApiError(404, fmt::format("No such File object: {}", id), "file_id", "invalid_request_error", "file_not_found");
}

void handle_upload(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  reject_query_parameters(req);
  const std::vector<FormPart> parts = parse_multipart(req.get_header_value(kFormTypeHeader), req.body);
  const FormPart* file = nullptr;
  std::string purpose;
  std::optional<std::string> anchor, seconds;  // expires_after[anchor], expires_after[seconds]
  for (const FormPart& p : parts) {
    if (p.name == "file" && !file && !p.filename.empty()) {
      file = &p;
    } else if (p.name == "purpose" && purpose.empty()) {
      purpose = std::string(p.body);
    } else if (p.name == "expires_after[anchor]" && !anchor) {
      anchor = std::string(p.body);
    } else if (p.name == "expires_after[seconds]" && !seconds) {
      seconds = std::string(p.body);
    } else {
      throw ApiError(400, fmt::format("Unrecognized request argument supplied: {}", p.name), p.name, "",
                     p.name == "file" || p.name == "purpose" ? "invalid_value" : "unknown_parameter");
    }
  }
  if (!file) bad_param("file", "'file' is required: a file part with a filename");
  if (purpose.empty()) bad_param("purpose", "'purpose' is required");
  if (!FileStore::client_purpose(purpose))
    unsupported("purpose", fmt::format("'{}' files are not kept here: 'batch' (the Batch API's input) or 'vision' "
                                       "(images for input_image file_id)",
                                       purpose));
  int64_t expires_after = 0;
  if (anchor || seconds) {
    if (!anchor || !seconds) bad_param("expires_after", "'expires_after' needs both 'anchor' and 'seconds'");
    expires_after = expires_after_seconds("expires_after", *anchor, *seconds);
  }
  auto f = ctx.files.put(new_request_id("file"), request_caller().owner, file->filename.substr(0, 512), purpose,
                         std::string(file->body), expires_after);
  if (!f)
    throw ApiError(400,
                   fmt::format("The file store is full: {} bytes kept or held for uploads of --max-file-store-mb {} "
                               "MiB; delete files first",
                               ctx.files.bytes(), ctx.files.max_bytes() >> 20),
                   "file", "invalid_request_error", "file_store_full");
  release_body(req);
  send_json(res, 200, f->object());
}

void handle_list(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  std::string purpose;
  const ListPage p = read_list_page(req, {.after = "", .limit = 10000, .asc = false}, 10000,
                                    [&](const std::string& k, const std::string& v) {
                                      if (k != "purpose") return false;
                                      purpose = v;
                                      return true;
                                    });
  std::vector<json> all;
  for (const FileStore::File& f : ctx.files.list(request_caller().owner, purpose)) all.push_back(f.object());
  const auto id_of = [](const json& f) { return f["id"].get<std::string>(); };
  send_json(res, 200, list_page(std::move(all), p, id_of, "File object"));
}

FileStore::File find_file(ServerContext& ctx, const httplib::Request& req) {
  reject_query_parameters(req);
  auto f = ctx.files.get(req.matches[1], request_caller().owner);
  if (!f) file_not_found(req.matches[1]);
  return *f;
}

}  // namespace

void register_files_routes(httplib::Server& svr, ServerContext& ctx) {
  svr.Post("/v1/files", [&ctx](const httplib::Request& req, httplib::Response& res) { handle_upload(ctx, req, res); });
  svr.Get("/v1/files", [&ctx](const httplib::Request& req, httplib::Response& res) { handle_list(ctx, req, res); });
  svr.Get(R"(/v1/files/([^/]+))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    send_json(res, 200, find_file(ctx, req).object());
  });
  svr.Get(R"(/v1/files/([^/]+)/content)", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const FileStore::File f = find_file(ctx, req);
    res.set_content(*f.content, "application/octet-stream");
  });
  svr.Delete(R"(/v1/files/([^/]+))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    if (!ctx.files.erase(req.matches[1], request_caller().owner)) file_not_found(req.matches[1]);
    send_json(res, 200, {{"id", std::string(req.matches[1])}, {"object", "file"}, {"deleted", true}});
  });
}

}  // namespace dpserve
