// Run-time LoRA adapters: SGLang's /load_lora_adapter and /unload_lora_adapter and vLLM's
// /v1/load_lora_adapter and /v1/unload_lora_adapter. They read folders on the server, so they are
// off unless --enable-lora, and operator routes (require_admin) like /flush_cache. The engine does
// the change on every rank at a step boundary (Engine::load_lora); the reply comes once it did.
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "server/route_helpers.h"
#include "server/routes.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

struct LoraBody {
  std::string name, path;
};

// Strict: unknown fields, wrong types and missing names are 400s naming the field.
LoraBody read_lora_body(ServerContext& ctx, const httplib::Request& req, const std::string& route, bool load,
                        bool sglang) {
  if (!ctx.opts.enable_lora)
    throw ApiError(400,
                   fmt::format("{} is off: start the server with --enable-lora to load and unload LoRA adapters while "
                               "it runs",
                               route),
                   "", "invalid_request_error", "lora_disabled");
  require_admin(ctx, route);
  auto known = [&](std::string_view k) {
    return k == "lora_name" || (load && k == "lora_path") || (load && sglang && k == "pinned");
  };
  const json body = read_json_body(ctx, req, known);
  if (!body.is_object()) bad_param("", fmt::format("the body of {} must be a JSON object", route));
  LoraBody b;
  for (const char* k : {"lora_name", "lora_path"}) {
    if (!load && std::string_view(k) == "lora_path") continue;
    const auto it = body.find(k);
    if (it == body.end()) bad_param(k, fmt::format("'{}' is required", k));
    if (!it->is_string() || it->get_ref<const std::string&>().empty())
      bad_param(k, fmt::format("'{}' must be a non-empty string", k));
    (std::string_view(k) == "lora_name" ? b.name : b.path) = it->get<std::string>();
  }
  // SGLang's pinned keeps an adapter from being evicted; this server never evicts one (it stays
  // until unloaded), so both values mean what they ask.
  if (const auto it = body.find("pinned"); it != body.end() && !it->is_boolean())
    bad_param("pinned", "'pinned' must be true or false");
  if (load && b.name == ctx.opts.served_model_name)
    bad_param("lora_name", fmt::format("'lora_name' '{}' is the served model's name (--served-model-name): requests "
                                       "could not tell them apart",
                                       b.name));
  if (load) {
    std::error_code ec;
    if (!std::filesystem::is_directory(b.path, ec))
      bad_param("lora_path",
                fmt::format("'lora_path': the adapter folder {} does not exist (or is not a folder)", b.path));
  }
  return b;
}

json loaded_adapters(ServerContext& ctx) {
  json out = json::object();
  if (const auto reg = ctx.engine.loras())
    for (const auto& a : reg->list()) out[a.name] = a.path;
  return out;
}

// SGLang's LoadLoRAAdapterReqOutput / UnloadLoRAAdapterReqOutput: 200 on success; as SGLang, 400 with
// success false and the reason for every refusal (an unknown name, an adapter in use, a bad folder),
// 503 while the server stops.
void send_sglang(ServerContext& ctx, httplib::Response& res, const LoraChange& c) {
  send_json(res, c.status == 200 || c.status == 503 ? c.status : 400,
            {{"success", c.status == 200},
             {"error_message", c.status == 200 ? json() : json(c.error)},
             {"loaded_adapters", loaded_adapters(ctx)}});
}

// vLLM's: plain text on success, its error body (OpenAI's shape) otherwise.
void send_vllm(httplib::Response& res, const LoraChange& c, const std::string& ok_text) {
  if (c.status != 200) {
    const char* code = c.status == 404 ? "lora_not_found" : c.status == 409 ? "lora_in_use" : "lora_not_loaded";
    throw ApiError(c.status, c.error, "lora_name",
                   c.status == 503 ? "service_unavailable_error" : "invalid_request_error", code);
  }
  res.status = 200;
  res.set_content(ok_text, "text/plain");
}

}  // namespace

void register_lora_routes(httplib::Server& svr, ServerContext& ctx) {
  svr.Post("/load_lora_adapter", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const LoraBody b = read_lora_body(ctx, req, "/load_lora_adapter", true, true);
    send_sglang(ctx, res, ctx.engine.load_lora(b.name, b.path));
  });
  svr.Post("/unload_lora_adapter", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const LoraBody b = read_lora_body(ctx, req, "/unload_lora_adapter", false, true);
    send_sglang(ctx, res, ctx.engine.unload_lora(b.name));
  });
  svr.Post("/v1/load_lora_adapter", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const LoraBody b = read_lora_body(ctx, req, "/v1/load_lora_adapter", true, false);
    send_vllm(res, ctx.engine.load_lora(b.name, b.path),
              fmt::format("Success: LoRA adapter '{}' added successfully.", b.name));
  });
  svr.Post("/v1/unload_lora_adapter", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const LoraBody b = read_lora_body(ctx, req, "/v1/unload_lora_adapter", false, false);
    send_vllm(res, ctx.engine.unload_lora(b.name),
              fmt::format("Success: LoRA adapter '{}' removed successfully.", b.name));
  });
}

}  // namespace dpserve
