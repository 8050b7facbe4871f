// The HTTP frontend's settings, as `dpserve serve` parses them from its flags.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "constrain/json_schema_compiler.h"
#include "server/chat_output.h"
#include "server/image_source.h"
#include "server/lora_adapters.h"
#include "server/pooling_config.h"
#include "server/sampling_defaults.h"

namespace dpserve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 30000;                 // 0: any free port (see HttpServer::port())
  std::vector<std::string> api_keys;  // non-empty: requests need "Authorization: Bearer <one of them>"
  std::string admin_api_key;        // non-empty: this key may abort any request, and all of them
  std::string served_model_name;    // the name /v1/models reports and requests must use
  std::string chat_template_path;   // a Jinja chat template file, overriding the tokenizer's
  size_t max_body_bytes = 32 << 20;
  int64_t max_queued_requests = 0;  // > 0: sequences (prompts x n) in flight beyond which requests get 429
  int64_t max_queued_tokens = 0;    // > 0: the same for tokens (prompt + max_tokens of each sequence)
  // > 0: the same for logprob entries the replies will hold (reported tokens x (1 + top_logprobs) x n)
  int64_t max_queued_logprobs = int64_t(1) << 22;
  // > 0: the floats the /v1/embeddings replies in flight hold (inputs x returned dimensions); 128 MiB as float32.
  int64_t max_queued_embedding_values = int64_t(1) << 25;
  double shutdown_timeout_s = 30;
  int http_threads = 512;           // connections served at once (each holds a thread, started on demand)
  double http_read_timeout_s = 5;   // longest wait for any single read from a client
  double http_request_timeout_s = 60;  // longest time to receive a request body after its headers (0 = no limit)
  // Whitespace JSON outputs may put between tokens (a regex; "" for compact JSON), as SGLang's
  // --constrained-json-whitespace-pattern.
  std::string json_whitespace = constrain::JsonSchemaOptions{}.whitespace;
  ToolCallParser tool_call_parser = ToolCallParser::kNone;     // --tool-call-parser
  ReasoningParser reasoning_parser = ReasoningParser::kNone;   // --reasoning-parser
  int64_t reasoning_budget = -1;        // --reasoning-budget: thinking tokens before a forced close (-1: no cap)
  std::string reasoning_budget_message;  // --reasoning-budget-message: written before the forced </think>
  std::string completion_template;  // --completion-template: the FIM format's name ("": found from the vocabulary)
  // Responses kept for previous_response_id and GET /v1/responses/{id}: the oldest go first beyond
  // this many, or beyond this many bytes of JSON.
  size_t max_stored_responses = 1024;
  size_t max_stored_response_bytes = size_t(256) << 20;
  // /v1/responses with background: true running at once (a thread each); more are a 429.
  size_t max_background_responses = 64;
  // Bytes the Files API keeps in memory (batch inputs and outputs); an upload or output beyond is refused.
  size_t max_file_store_bytes = size_t(256) << 20;
  // SGLang's --skip-tokenizer-init: the tokenizer is an ids-only stand-in (tokenizer/ids_only_tokenizer.h);
  // requests must carry token ids (/generate input_ids) and responses carry ids only.
  bool skip_tokenizer_init = false;
  bool log_requests = false;  // SGLang's --log-requests: each request's prompt and output in the log
  // The browser page at GET / (chat, server info, live metrics); --no-webui leaves / a 404.
  bool webui = true;
  // Image inputs: the limits and URL policy from the flags, the token ids and preprocessing from
  // the model folder (config.json, preprocessor_config.json).
  ImageOptions images;
  // The model's sampling defaults (--sampling-defaults model), applied on the OpenAI routes to the sampling
  // fields a request leaves out; empty with --sampling-defaults openai.
  SamplingDefaults sampling_defaults;
  // --preferred-sampling-params: the operator's values, over the model's on the OpenAI routes and over
  // SGLang's own defaults on /generate; a request's own fields win over both.
  SamplingDefaults preferred_sampling;
  // --is-embedding: the pooling head /v1/embeddings runs (enabled: generation routes are refused).
  EmbeddingConfig embedding;
  // --lora-paths: the adapters requests may name (slot = index), listed by /v1/models.
  std::vector<LoraAdapterPath> lora_adapters;
  // --enable-lora: /load_lora_adapter and /unload_lora_adapter (and vLLM's /v1/ ones) may load and
  // unload adapters from server-side folders while the server runs. Off: those routes answer 400.
  bool enable_lora = false;
  // --return-tokens-as-token-ids (vLLM): completions' and chat's logprobs name tokens "token_id:<id>"
  // unless a request's return_tokens_as_token_ids says otherwise.
  bool return_tokens_as_token_ids = false;
  // --enable-priority-scheduling (the scheduler's flag, SchedulerConfig): requests may give `priority`.
  bool priority_scheduling = false;
  bool low_priority_values_first = false;  // --schedule-low-priority-values-first: smaller is more important
  // --trust-request-chat-template (vLLM): requests may bring their own chat_template.
  bool trust_request_chat_template = false;
};

}  // namespace dpserve
