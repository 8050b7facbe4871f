#include "server/http_server.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/check.h"
#include "server/anthropic_error.h"
#include "server/elastic_thread_pool.h"
#include "server/http_connection.h"
#include "server/openai_error.h"
#include "server/route_helpers.h"
#include "server/routes.h"
#include "server/server_context.h"
#include "tokenizer/chat_template.h"

namespace dpserve {

namespace {

// Counts the connections cpp-httplib has accepted and not yet closed: it runs each connection as
// one task, from accept to close, so the count is exact without looking at any socket.
class CountingThreadPool : public ElasticThreadPool {
 public:
  CountingThreadPool(size_t initial, size_t max_threads, std::atomic<int64_t>& open)
      : ElasticThreadPool(initial, max_threads), open_(open) {}
  void enqueue(std::function<void()> fn) override {
    open_.fetch_add(1);
    ElasticThreadPool::enqueue([this, fn = std::move(fn)] {
      std::shared_ptr<void> done(nullptr, [this](void*) { open_.fetch_sub(1); });
      fn();
    });
  }

 private:
  std::atomic<int64_t>& open_;
};

// The label /metrics counts a request under: its route's pattern with each parameter as {}
// ("/v1/responses/{}/input_items"), never the path a client chose, or every id a client makes up
// would add a series that lives as long as the server.
std::string route_label(const httplib::Request& req) {
  if (req.matches.empty()) return "other";
  std::string out;
  size_t at = 0;
  for (size_t i = 1; i < req.matches.size(); ++i) {
    const size_t p = size_t(req.matches.position(i));
    if (!req.matches[i].matched || p < at) continue;  // unmatched, or nested in the previous group
    out += req.path.substr(at, p - at) + "{}";
    at = p + size_t(req.matches.length(i));
  }
  return out + req.path.substr(std::min(at, req.path.size()));
}

// A client's path as the access log shows it: httplib has %-decoded it, so control characters
// (a decoded %0A would start a forged log line) are written %-encoded again, and a long one is cut.
std::string loggable_path(std::string_view p) {
  constexpr size_t kMax = 512;
  std::string out;
  for (unsigned char ch : p.substr(0, kMax)) {
    if (ch < 0x20 || ch == 0x7f) out += fmt::format("%{:02X}", ch);
    else out += char(ch);
  }
  if (p.size() > kMax) out += fmt::format("...({} bytes)", p.size());
  return out;
}

// The web page's shell is exempt too: it is static and carries no data (see routes_webui.cpp); the
// routes it calls for data are not.
bool auth_exempt(const std::string& path, const ServerOptions& opts) {
  return path == "/health" || path == "/health_generate" || path == "/metrics" || (opts.webui && path == "/");
}

// cpp-httplib listens with a backlog of 5: when more clients connect at once than that, the kernel
// drops their handshakes and they retry after 1, 2, 4, ... s, as if the server were stuck. Calling
// listen() again on the bound socket raises the backlog (the kernel caps it at somaxconn).
void widen_listen_backlog(int port) {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == dirfd(d)) continue;
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(int(fd), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    sockaddr_storage sa{};
    socklen_t sl = sizeof sa;
    if (getsockname(int(fd), reinterpret_cast<sockaddr*>(&sa), &sl) != 0) continue;
    int p = -1;
    if (sa.ss_family == AF_INET) p = ntohs(reinterpret_cast<sockaddr_in*>(&sa)->sin_port);
    if (sa.ss_family == AF_INET6) p = ntohs(reinterpret_cast<sockaddr_in6*>(&sa)->sin6_port);
    if (p == port && ::listen(int(fd), SOMAXCONN) != 0) spdlog::warn("cannot raise the listen backlog of port {}", port);
  }
  closedir(d);
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
    : ctx_(std::make_unique<ServerContext>(std::move(opts), engine, tok, std::move(server_info))) {
  ServerContext& c = *ctx_;
  c.created = unix_seconds();
  // Request bodies (up to --max-body-bytes) are the process's biggest short-lived blocks. glibc
  // raises its mmap threshold to the size of a freed mmapped block, so after one big body the next
  // ones land in the connection threads' arenas, whose free memory it does not give back (RSS grew
  // by about a body per big request). A fixed threshold keeps blocks of 4 MiB and more in their own
  // mappings, returned when freed.
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  if (c.opts.served_model_name.empty()) c.opts.served_model_name = "default";
  c.parse.tok = &tok;
  c.parse.skip_tokenizer = c.opts.skip_tokenizer_init;
  c.parse.dp_size = engine.dp_size();
  c.parse.tokens_as_ids = c.opts.return_tokens_as_token_ids;
  c.parse.priority_scheduling = c.opts.priority_scheduling;
  c.parse.trust_request_chat_template = c.opts.trust_request_chat_template;
  // The engine's limits; token ids must also be ones the tokenizer can turn back into text.
  c.parse.limits = engine.limits();
  c.parse.limits.vocab = std::min<int64_t>(c.parse.limits.vocab, tok.vocab_size());
  c.parse.served_model_name = c.opts.served_model_name;
  c.parse.constraints = &c.constraints;
  try {  // a bad whitespace pattern is a start-up error, not a 400 on every JSON request
    constrain::json_object_grammar(constrain::JsonSchemaOptions{c.opts.json_whitespace});
  } catch (const Error& e) {
    fail("--constrained-json-whitespace-pattern: {}", e.what());
  }
  for (const auto& p : c.opts.images.allowed_url_prefixes) check_image_url_prefix(p);
  if (c.opts.images.decode_memory <= 0)
    fail("--image-decode-memory must be positive (got {})", c.opts.images.decode_memory);
  if (!(c.opts.images.decode_wait_s >= 0))
    fail("--image-decode-wait must be >= 0 (got {})", c.opts.images.decode_wait_s);
  c.opts.images.decode_budget = std::make_shared<MemoryBudget>(c.opts.images.decode_memory);
  c.parse.images = &c.opts.images;
  c.parse.tool_parser = c.opts.tool_call_parser;
  c.parse.reasoning_parser = c.opts.reasoning_parser;
  if (!c.opts.completion_template.empty() && c.opts.skip_tokenizer_init)
    fail("--completion-template needs the tokenizer (--skip-tokenizer-init serves token ids only)");
  if (!c.opts.skip_tokenizer_init)
    c.parse.fim = c.opts.completion_template.empty() ? find_fim_format(tok)
                                                     : fim_format_named(tok, c.opts.completion_template);
  if (c.opts.tool_call_parser == ToolCallParser::kGptOss && c.opts.reasoning_parser != ReasoningParser::kGptOss)
    fail("--tool-call-parser gpt-oss needs --reasoning-parser gpt-oss (the harmony format's channels carry the "
         "reasoning, the answer and the calls alike: one reader splits them)");
  if (c.opts.reasoning_parser == ReasoningParser::kGptOss) {
    if (c.opts.reasoning_budget >= 0 || !c.opts.reasoning_budget_message.empty())
      fail("--reasoning-budget{} is not supported with --reasoning-parser gpt-oss (a harmony analysis message is not "
           "closed by force)", c.opts.reasoning_budget >= 0 ? "" : "-message");
    if (const std::string_view tag = c.opts.skip_tokenizer_init ? "" : missing_harmony_tag(tok); !tag.empty())
      fail("--reasoning-parser gpt-oss: this tokenizer has no {} special token, so the model does not write the "
           "harmony format (gpt-oss does); use qwen3 / deepseek-r1 for <think> blocks", tag);
  }
  // The <think> tags' ids (budgets, reasoning_tokens); harmony has neither, whatever the vocabulary holds.
  if (c.opts.reasoning_parser == ReasoningParser::kQwen3 && !c.opts.skip_tokenizer_init)
    c.parse.think = make_think_budget_config(tok, c.opts.reasoning_budget, c.opts.reasoning_budget_message);
  else if (c.opts.reasoning_budget >= 0 || !c.opts.reasoning_budget_message.empty())
    fail("--reasoning-budget{} needs --reasoning-parser (the budget counts the tokens of its <think> block) and the "
         "tokenizer", c.opts.reasoning_budget >= 0 ? "" : "-message");
  c.openai_sampling = c.opts.sampling_defaults;
  c.openai_sampling.overlay(c.opts.preferred_sampling);
  if (!c.openai_sampling.empty()) c.parse.sampling_defaults = &c.openai_sampling;
  if (!c.opts.preferred_sampling.empty()) c.parse.preferred_sampling = &c.opts.preferred_sampling;
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

  if (c.opts.http_request_timeout_s < 0)
    fail("--http-request-timeout must be >= 0 (got {})", c.opts.http_request_timeout_s);
  BodyLimits body_limits;
  body_limits.max_bytes = c.opts.max_body_bytes;
  body_limits.deadline = std::chrono::milliseconds(int64_t(c.opts.http_request_timeout_s * 1000));
  body_limits.cut_off = &c.metrics.read_deadline_closed;
  auto server = std::make_unique<ConnectionServer>(body_limits);
  ConnectionServer& s = *server;
  svr_ = std::move(server);
  // Threads start per connection on demand (up to the cap), so clients that connect and stay idle
  // or send slowly hold only their own thread and never queue other clients behind them.
  const size_t threads = size_t(std::max(4, c.opts.http_threads));
  s.new_task_queue = [threads, &c] {
    return new CountingThreadPool(std::min<size_t>(8, threads), threads, c.metrics.http_connections);
  };
  s.set_payload_max_length(c.opts.max_body_bytes);
  const auto read_us = int64_t(c.opts.http_read_timeout_s * 1e6);
  if (read_us <= 0) fail("--http-read-timeout must be > 0 (got {})", c.opts.http_read_timeout_s);
  s.set_read_timeout(read_us / 1000000, read_us % 1000000);
  // Keep-alive longer than common clients' idle-socket timeout (Node's agentkeepalive: 4 s), so a
  // client never reuses a connection the server is closing at that moment.
  s.set_keep_alive_timeout(5);

  // Decided from the headers, before any body is read.
  s.set_gate([&c](const httplib::Request& req) -> std::optional<ApiError> {
    AccessInfo& ai = access_info();
    ai = AccessInfo{};
    ai.start = std::chrono::steady_clock::now();
    std::optional<Caller> caller = c.auth.authenticate(req, auth_exempt(req.path, c.opts));
    if (!caller)
      return ApiError(401, "Invalid or missing API key: send 'Authorization: Bearer <key>' (or 'X-Api-Key: <key>')",
                      "", "", "invalid_api_key");
    request_caller() = std::move(*caller);
    if (c.draining.load() && req.path != "/metrics" && req.path != "/get_server_info" && req.path != "/server_info")
      return ApiError(503, "The server is shutting down", "", "", "server_draining");
    return std::nullopt;
  });

  // The Anthropic Messages routes answer errors in Anthropic's shape, whichever part made them: the
  // gate, a route's exception, or cpp-httplib's own statuses (before it compresses the body).
  s.set_refusal_shaper(reshape_anthropic_error);
  s.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    try {
      std::rethrow_exception(ep);
    } catch (const ApiError& e) {
      if (e.status() == 429) res.set_header("Retry-After", "1");
      send_json(res, e.status(), e.body());
    } catch (const Error& e) {
      send_json(res, 400, error_body(400, e.what()));
    } catch (const std::exception& e) {
      spdlog::error("internal error: {}", e.what());
      send_json(res, 500, error_body(500, fmt::format("Internal server error: {}", e.what())));
    } catch (...) {
      send_json(res, 500, error_body(500, "Internal server error"));
    }
    reshape_anthropic_error(req, res);
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
    reshape_anthropic_error(req, res);
    return httplib::Server::HandlerResponse::Handled;
  }));

  s.set_logger([&c](const httplib::Request& req, const httplib::Response& res) {
    const AccessInfo& ai = access_info();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - ai.start).count();
    c.metrics.count_request(res.status == 404 ? std::string("unmatched") : route_label(req), res.status);
    spdlog::info("{} {} {} {} prompt_tokens={} completion_tokens={}{}{} request_id={} {:.1f}ms", req.remote_addr,
                 req.method, loggable_path(req.path), res.status, ai.prompt_tokens, ai.completion_tokens,
                 ai.finish.empty() ? "" : " finish=" + ai.finish, ai.extra, res.get_header_value("X-Request-Id"), ms);
  });

  register_openai_routes(s, c);
  register_stored_chat_routes(s, c);
  register_responses_routes(s, c);
  register_files_routes(s, c);
  register_upload_routes(s, c);
  register_batch_routes(s, c);
  register_messages_routes(s, c);
  register_conversation_routes(s, c);
  register_message_batch_routes(s, c);
  register_sglang_routes(s, c);
  register_sglang_util_routes(s, c);
  if (c.opts.webui) register_webui_route(s, c);
  register_embeddings_routes(s, c);
  register_lora_routes(s, c);
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::set_encoder_times(std::shared_ptr<EncoderTimes> t) { ctx_->metrics.encoder = std::move(t); }

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
  widen_listen_backlog(port_);
  thread_ = std::thread([this] { svr_->listen_after_bind(); });
  spdlog::info("serving {} on http://{}:{} (OpenAI API under /v1)", ctx_->opts.served_model_name, ctx_->opts.host, port_);
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
