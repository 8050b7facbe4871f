#include "server/http_server.h"

#include <ctime>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/check.h"
#include "server/connection_watch.h"
#include "server/openai_error.h"
#include "server/server_context.h"
#include "tokenizer/chat_template.h"

namespace dpserve {

std::string ServerContext::new_id(const char* prefix) {
  return fmt::format("{}-{:x}{:06x}", prefix, created, next_id.fetch_add(1));
}

AccessInfo& access_info() {
  thread_local AccessInfo info;
  return info;
}

void send_json(httplib::Response& res, int status, const nlohmann::json& j) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}

void admit_generation(ServerContext& ctx) {
  if (ctx.draining.load())
    throw ApiError(503, "The server is shutting down and takes no new requests", "", "service_unavailable_error",
                   "server_draining");
  if (!ctx.engine.healthy())
    throw ApiError(503, "The engine is not ready (loading, or a rank failed)", "", "service_unavailable_error",
                   "engine_unavailable");
  if (ctx.opts.max_queued_requests > 0 && ctx.metrics.http_inflight.load() >= ctx.opts.max_queued_requests)
    throw ApiError(503,
                   fmt::format("Too many requests in flight (limit {}); retry later", ctx.opts.max_queued_requests),
                   "", "service_unavailable_error", "queue_full");
}

std::function<bool()> client_gone_fn(ServerContext& ctx, const httplib::Request& req) {
  auto watch = std::make_shared<ConnectionWatch>(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
  return [watch, &ctx] { return ctx.stopping.load() || watch->closed(); };
}

namespace {

bool auth_exempt(const std::string& path) {
  return path == "/health" || path == "/health_generate" || path == "/metrics";
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("--chat-template: cannot open {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

HttpServer::HttpServer(ServerOptions opts, Engine& engine, const Tokenizer& tok, nlohmann::json server_info)
    : ctx_(std::make_unique<ServerContext>(std::move(opts), engine, tok, std::move(server_info))),
      svr_(std::make_unique<httplib::Server>()) {
  ServerContext& c = *ctx_;
  c.created = int64_t(std::time(nullptr));
  if (c.opts.served_model_name.empty()) c.opts.served_model_name = "default";
  c.parse.tok = &tok;
  c.parse.context_length = engine.context_length();
  c.parse.served_model_name = c.opts.served_model_name;
  c.parse.max_n = c.opts.max_n;
  if (c.info.is_object() && c.info.contains("hidden_size") && c.info["hidden_size"].is_number_integer())
    c.parse.hidden_size = c.info["hidden_size"].get<int64_t>();
  // Parsed once here, so a broken template stops the server at start rather than failing each chat.
  std::optional<std::string> tmpl =
      c.opts.chat_template_path.empty() ? tok.chat_template() : std::optional(read_file(c.opts.chat_template_path));
  if (tmpl) {
    try {
      c.parse.chat_template = std::make_shared<const ChatTemplate>(*tmpl);
    } catch (const Error& e) {
      fail("chat template{}: {}", c.opts.chat_template_path.empty() ? "" : " " + c.opts.chat_template_path, e.what());
    }
  }

  httplib::Server& s = *svr_;
  const int threads = std::max(4, c.opts.http_threads);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  s.set_payload_max_length(c.opts.max_body_bytes);
  // Keep-alive longer than common clients' idle-socket timeout (Node's agentkeepalive: 4 s), so a
  // client never reuses a connection the server is closing at that moment.
  s.set_keep_alive_timeout(5);

  s.set_pre_routing_handler([&c](const httplib::Request& req, httplib::Response& res) {
    AccessInfo& ai = access_info();
    ai = AccessInfo{};
    ai.start = std::chrono::steady_clock::now();
    if (!c.opts.api_key.empty() && !auth_exempt(req.path)) {
      const std::string want = "Bearer " + c.opts.api_key;
      if (req.get_header_value("Authorization") != want) {
        send_json(res, 401,
                  error_body(401, "Invalid or missing API key: send 'Authorization: Bearer <key>'", "",
                             "invalid_api_key"));
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    if (c.draining.load() && req.path != "/metrics" && req.path != "/get_server_info") {
      send_json(res, 503, error_body(503, "The server is shutting down", "", "server_draining"));
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    try {
      std::rethrow_exception(ep);
    } catch (const ApiError& e) {
      send_json(res, e.status(), e.body());
    } catch (const Error& e) {
      send_json(res, 400, error_body(400, e.what()));
    } catch (const std::exception& e) {
      spdlog::error("internal error: {}", e.what());
      send_json(res, 500, error_body(500, fmt::format("Internal server error: {}", e.what())));
    } catch (...) {
      send_json(res, 500, error_body(500, "Internal server error"));
    }
  });

  // Statuses cpp-httplib produces itself (404 route, 413 body, 400 framing) still get an OpenAI body.
  s.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string msg;
    std::string code;
    switch (res.status) {
      case 404: msg = fmt::format("No route {} {}", req.method, req.path); code = "not_found"; break;
      case 405: msg = fmt::format("Method {} is not allowed on {}", req.method, req.path); break;
      case 413: msg = "The request body is larger than the server's limit (--max-body-bytes)"; code = "body_too_large"; break;
      default: msg = fmt::format("HTTP {}", res.status); break;
    }
    send_json(res, res.status, error_body(res.status, msg, "", code));
    return httplib::Server::HandlerResponse::Handled;
  }));

  s.set_logger([&c](const httplib::Request& req, const httplib::Response& res) {
    const AccessInfo& ai = access_info();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - ai.start).count();
    std::string route = req.matches.empty() ? std::string("other") : req.path;
    c.metrics.count_request(res.status == 404 ? std::string("unmatched") : route, res.status);
    spdlog::info("{} {} {} {} prompt_tokens={} completion_tokens={}{} {:.1f}ms", req.remote_addr, req.method,
                 req.path, res.status, ai.prompt_tokens, ai.completion_tokens,
                 ai.finish.empty() ? "" : " finish=" + ai.finish, ms);
  });

  register_openai_routes(s, c);
  register_sglang_routes(s, c);
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
  if (ctx_->opts.port == 0) {
    port_ = svr_->bind_to_any_port(ctx_->opts.host);
    if (port_ <= 0) fail("cannot listen on {} (any port)", ctx_->opts.host);
  } else {
    if (!svr_->bind_to_port(ctx_->opts.host, ctx_->opts.port))
      fail("cannot listen on {}:{}: the address is in use or not available (choose another --port or --host)",
           ctx_->opts.host, ctx_->opts.port);
    port_ = ctx_->opts.port;
  }
  thread_ = std::thread([this] { svr_->listen_after_bind(); });
  spdlog::info("serving {} on http://{}:{}", ctx_->opts.served_model_name, ctx_->opts.host, port_);
}

int HttpServer::port() const { return port_; }

void HttpServer::begin_drain() { ctx_->draining = true; }

void HttpServer::stop() {
  ctx_->draining = true;
  ctx_->stopping = true;
  if (svr_) svr_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace dpserve
