// OpenAI's Uploads API, for files larger than one request body: POST /v1/uploads (declares the file),
// POST /v1/uploads/{id}/parts (multipart field `data`, one chunk each, in any order, also in
// parallel), POST /v1/uploads/{id}/complete (the parts in order, optionally with their MD5) and
// POST /v1/uploads/{id}/cancel. A completed upload is a file of /v1/files.
#include <cctype>
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

constexpr int64_t kMaxUploadBytes = 8000000000;  // OpenAI's bound: 8 GB
constexpr size_t kMaxPartBytes = 64u << 20;      // OpenAI's bound per part: 64 MB

// A MIME type's shape (RFC 6838: type "/" subtype, parameters after ";"); what it says is not
// checked against the content, as the content is kept as it comes.
bool mime_type_shaped(const std::string& s) {
  const size_t slash = s.find('/');
  const std::string essence = s.substr(0, s.find(';'));
  auto token = [](const std::string& t) {
    if (t.empty() || t.size() > 127) return false;
    for (unsigned char c : t)
      if (!std::isalnum(c) && std::string_view("!#$&-^_.+").find(char(c)) == std::string_view::npos) return false;
    return true;
  };
  return slash != std::string::npos && slash < essence.size() && token(essence.substr(0, slash)) &&
         token(essence.substr(slash + 1));
}

void create_upload(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  reject_query_parameters(req);
  const json body = read_json_body(ctx, req, [](std::string_view k) {
    return k == "bytes" || k == "filename" || k == "mime_type" || k == "purpose" || k == "expires_after";
  });
  auto string_field = [&](const char* k) {
    if (!body.contains(k)) bad_param(k, fmt::format("'{}' is required", k));
    if (!body[k].is_string() || body[k].get_ref<const std::string&>().empty())
      bad_param(k, fmt::format("'{}' must be a non-empty string", k));
    return body[k].get<std::string>();
  };
  if (!body.contains("bytes")) bad_param("bytes", "'bytes' is required");
  if (!body["bytes"].is_number_integer() || body["bytes"].get<int64_t>() < 0 ||
      body["bytes"].get<int64_t>() > kMaxUploadBytes)
    bad_param("bytes", fmt::format("'bytes' must be an integer from 0 to {} (8 GB)", kMaxUploadBytes));
  const int64_t bytes = body["bytes"].get<int64_t>();
  const std::string filename = string_field("filename");
  const std::string mime_type = string_field("mime_type");
  const std::string purpose = string_field("purpose");
  if (!mime_type_shaped(mime_type))
    bad_param("mime_type", fmt::format("'mime_type' must be a MIME type such as application/jsonl, not '{}'",
                                       mime_type.substr(0, 200)));
  if (!FileStore::client_purpose(purpose))
    unsupported("purpose", fmt::format("'{}' files are not kept here: 'batch' (the Batch API's input) or 'vision' "
                                       "(images for input_image file_id)",
                                       purpose.substr(0, 200)));
  const int64_t expires_after = expires_after_object("expires_after", body.value("expires_after", json()));
  const UploadStore::Upload u = ctx.uploads.create(new_underscore_id("upload"), request_caller().owner,
                                                   filename.substr(0, 512), purpose, bytes, expires_after);
  send_json(res, 200, u.object());
}

void handle_part(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  reject_query_parameters(req);
  const std::vector<FormPart> parts = parse_multipart(req.get_header_value(kFormTypeHeader), req.body);
  const FormPart* data = nullptr;
  for (const FormPart& p : parts) {
    if (p.name != "data" || data)
      throw ApiError(400, fmt::format("Unrecognized request argument supplied: {}", p.name), p.name, "",
                     p.name == "data" ? "invalid_value" : "unknown_parameter");
    data = &p;
  }
  if (!data) bad_param("data", "'data' is required: the part's bytes");
  if (data->body.size() > kMaxPartBytes)
    bad_param("data",
              fmt::format("A part holds at most 64 MB ({} bytes); this one has {}", kMaxPartBytes, data->body.size()));
  std::string bytes(data->body);
  release_body(req);
  send_json(res, 200,
            ctx.uploads.add_part(req.matches[1], request_caller().owner, new_underscore_id("part"), std::move(bytes)));
}

void handle_complete(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  reject_query_parameters(req);
  const json body = read_json_body(ctx, req, [](std::string_view k) { return k == "part_ids" || k == "md5"; });
  if (!body.contains("part_ids")) bad_param("part_ids", "'part_ids' is required: the parts' ids in order");
  const json& ids = body["part_ids"];
  if (!ids.is_array() || ids.size() > UploadStore::kMaxParts)
    bad_param("part_ids", fmt::format("'part_ids' must be an array of at most {} part ids", UploadStore::kMaxParts));
  std::vector<std::string> part_ids;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!ids[i].is_string()) bad_param(fmt::format("part_ids[{}]", i), "each part id must be a string");
    part_ids.push_back(ids[i].get<std::string>());
  }
  std::optional<std::string> md5;
  if (body.contains("md5") && !body["md5"].is_null()) {
    const json& m = body["md5"];
    bool hex = m.is_string() && m.get_ref<const std::string&>().size() == 32;
    if (hex) {
      md5 = m.get<std::string>();
      for (char& c : *md5) {
        hex = hex && std::isxdigit(static_cast<unsigned char>(c));
        c = char(std::tolower(static_cast<unsigned char>(c)));
      }
    }
    if (!hex) bad_param("md5", "'md5' must be the file's MD5 digest: 32 hexadecimal digits");
  }
  const UploadStore::Upload u =
      ctx.uploads.complete(req.matches[1], request_caller().owner, part_ids, md5, new_request_id("file"));
  send_json(res, 200, u.object());
}

}  // namespace

void register_upload_routes(httplib::Server& svr, ServerContext& ctx) {
  svr.Post("/v1/uploads",
           [&ctx](const httplib::Request& req, httplib::Response& res) { create_upload(ctx, req, res); });
  svr.Post(R"(/v1/uploads/([^/]+)/parts)",
           [&ctx](const httplib::Request& req, httplib::Response& res) { handle_part(ctx, req, res); });
  svr.Post(R"(/v1/uploads/([^/]+)/complete)",
           [&ctx](const httplib::Request& req, httplib::Response& res) { handle_complete(ctx, req, res); });
  svr.Post(R"(/v1/uploads/([^/]+)/cancel)", [&ctx](const httplib::Request& req, httplib::Response& res) {
    reject_query_parameters(req);
    send_json(res, 200, ctx.uploads.cancel(req.matches[1], request_caller().owner).object());
  });
}

}  // namespace dpserve
