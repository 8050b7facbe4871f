// The HTTP frontend on rank 0: OpenAI and SGLang routes over cpp-httplib, API-key auth, body
// limits, draining for graceful shutdown and a one-line access log per request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "tokenizer/tokenizer.h"

namespace httplib {
class Server;
}

namespace dpserve {

struct ServerContext;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 30000;                 // 0: any free port (see HttpServer::port())
  std::string api_key;              // non-empty: requests need "Authorization: Bearer <key>"
  std::string served_model_name;    // the name /v1/models reports and requests must use
  std::string chat_template_path;   // a Jinja chat template file, overriding the tokenizer's
  size_t max_body_bytes = 32 << 20;
  int64_t max_queued_requests = 0;  // > 0: generation requests beyond this many in flight get 503
  double shutdown_timeout_s = 30;
  int http_threads = 512;           // connections served at once (each holds a thread, started on demand)
  double http_read_timeout_s = 5;   // longest wait for any single read from a client
  double http_request_timeout_s = 60;  // longest time to receive a request body after its headers (0 = no limit)
};

// Usage: start(); ... on SIGTERM: begin_drain(); engine.shutdown(timeout); stop().
class HttpServer {
 public:
  // server_info: what /get_server_info reports (flags, model).
  HttpServer(ServerOptions opts, Engine& engine, const Tokenizer& tok, nlohmann::json server_info);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  void start();            // binds and serves in background threads; throws dpserve::Error if the port is taken
  int port() const;        // actual port (when opts.port == 0)
  void begin_drain();      // new requests get 503, /health 503
  void stop();             // closes the listener; requests still waiting on the engine end with "abort"

 private:
  std::unique_ptr<ServerContext> ctx_;
  std::unique_ptr<httplib::Server> svr_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace dpserve
