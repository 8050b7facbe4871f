// The route tables: each registers its routes on the server, translating HTTP for the context's engine.
#pragma once

#include <httplib.h>

#include "server/server_context.h"

namespace dpserve {

// /v1/completions, /v1/chat/completions, /v1/models.
void register_openai_routes(httplib::Server& svr, ServerContext& ctx);
// Chat completions kept with store: true: list, retrieve, update metadata, delete, their messages.
void register_stored_chat_routes(httplib::Server& svr, ServerContext& ctx);
// /v1/responses (create, streamed or not), GET and DELETE /v1/responses/{id}.
void register_responses_routes(httplib::Server& svr, ServerContext& ctx);
// OpenAI's Conversations API (/v1/conversations and its items), which /v1/responses continues.
void register_conversation_routes(httplib::Server& svr, ServerContext& ctx);
// OpenAI Files API (/v1/files: batch inputs and outputs) and Batch API (/v1/batches).
void register_files_routes(httplib::Server& svr, ServerContext& ctx);
void register_batch_routes(httplib::Server& svr, ServerContext& ctx);
// OpenAI's Uploads API (/v1/uploads): a file sent in parts, kept as a file of /v1/files.
void register_upload_routes(httplib::Server& svr, ServerContext& ctx);
// /v1/messages (Anthropic's Messages API, streamed or not) and /v1/messages/count_tokens.
void register_messages_routes(httplib::Server& svr, ServerContext& ctx);
// Anthropic's Message Batches API (/v1/messages/batches), after register_messages_routes.
void register_message_batch_routes(httplib::Server& svr, ServerContext& ctx);
// /generate, /health, /health_generate, /get_server_info, /abort_request, /metrics.
void register_sglang_routes(httplib::Server& svr, ServerContext& ctx);
// /get_model_info, /tokenize, /detokenize (also under /v1/), /flush_cache.
void register_sglang_util_routes(httplib::Server& svr, ServerContext& ctx);
// /load_lora_adapter, /unload_lora_adapter (SGLang) and /v1/load_lora_adapter, /v1/unload_lora_adapter
// (vLLM): LoRA adapters loaded and unloaded while the server runs (--enable-lora).
void register_lora_routes(httplib::Server& svr, ServerContext& ctx);
// /v1/embeddings (--is-embedding), /v1/rerank.
void register_embeddings_routes(httplib::Server& svr, ServerContext& ctx);

// GET /: the embedded web page (unless --no-webui). The page is the same bytes on every server and
// carries no data; it reads everything through the API routes, with the key the user gives it.
void register_webui_route(httplib::Server& svr, ServerContext& ctx);

}  // namespace dpserve
