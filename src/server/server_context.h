// State shared by the HTTP routes: the engine and tokenizer they translate for, the parse settings,
// metrics and the running-request registry. Routes hold no state of their own.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "constrain/compile_cache.h"
#include "engine/engine.h"
#include "server/admission.h"
#include "server/auth.h"
#include "server/background_runs.h"
#include "server/batch_store.h"
#include "server/event_log.h"
#include "server/file_store.h"
#include "server/upload_store.h"
#include "server/metrics.h"
#include "server/request_parse.h"
#include "server/request_registry.h"
#include "server/response_store.h"
#include "server/server_options.h"
#include "tokenizer/tokenizer.h"

namespace dpserve {

struct ServerContext {
  ServerContext(ServerOptions o, Engine& e, const Tokenizer& t, nlohmann::json i)
      : opts(std::move(o)),
        engine(e),
        tok(t),
        info(std::move(i)),
        auth(opts.api_keys, opts.admin_api_key),
        admission(opts.max_queued_requests, opts.max_queued_tokens, opts.max_queued_logprobs,
                  opts.max_queued_embedding_values),
        constraints(256, constrain::JsonSchemaOptions{opts.json_whitespace}),
        responses(opts.max_stored_responses, opts.max_stored_response_bytes),
        conversations(opts.max_stored_responses, opts.max_stored_response_bytes),
        chat_completions(opts.max_stored_responses, opts.max_stored_response_bytes) {}

  ServerOptions opts;
  Engine& engine;
  const Tokenizer& tok;
  nlohmann::json info;
  Auth auth;
  Admission admission;
  constrain::CompileCache constraints;  // structured outputs by their text (compiled here, on rank 0)
  ResponseStore responses;              // /v1/responses kept for previous_response_id
  ResponseStore conversations;          // /v1/conversations: the object as `response`, its items as `conversation`
  ResponseStore chat_completions;       // chat completions made with store: true, their messages as `conversation`
  ParseContext parse;
  SamplingDefaults openai_sampling;  // the model's defaults under the operator's preferences (parse points here)
  Metrics metrics;
  RequestRegistry registry;
  std::atomic<bool> draining{false};
  std::atomic<bool> stopping{false};
  int64_t created = 0;  // unix seconds at start, for "created" fields
  FileStore files{opts.max_file_store_bytes};  // /v1/files
  UploadStore uploads{files};                  // /v1/uploads: files arriving in parts
  BatchStore batches{1024};                    // /v1/batches
  BatchStore message_batches{1024};            // /v1/messages/batches
  // The routes a batch's lines go to (POST path -> handler), as the HTTP server would call them.
  std::map<std::string, std::function<void(const httplib::Request&, httplib::Response&)>> batch_routes;
  // The events of streamed background responses, for their readers (running ones, and as many finished).
  EventLogs background_events{opts.max_background_responses};
  // Last, so that it is destroyed first: its destructor cancels and joins the background runs,
  // which use everything above.
  BackgroundRuns background{opts.max_background_responses};
};

}  // namespace dpserve
