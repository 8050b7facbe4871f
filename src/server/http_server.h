// The HTTP frontend on rank 0: OpenAI and SGLang routes over cpp-httplib, API-key auth, body
// limits, draining for graceful shutdown and a one-line access log per request.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "server/image_timing.h"
#include "server/server_options.h"
#include "tokenizer/tokenizer.h"

namespace httplib {
class Server;
}

namespace dpserve {

struct ServerContext;

// Usage: start(); ... on SIGTERM: begin_drain(); engine.shutdown(timeout); stop().
class HttpServer {
 public:
  // server_info: what /get_server_info reports (flags, model).
  HttpServer(ServerOptions opts, Engine& engine, const Tokenizer& tok, nlohmann::json server_info);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Where rank 0's vision tower runs are recorded (RuntimeOptions::image_tap): /metrics and the
  // request log read them. Before start().
  void set_encoder_times(std::shared_ptr<EncoderTimes> t);
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
