# The tests the ASan+UBSan phase of scripts/sanitize.sh runs beside the unit tests (sourced by it and
# by scripts/test.sh, which leaves these out of its CTest suite: they run once, under ASan, where they
# check more). asan_sel selects; asan_not and asan_not_time are left to the normal build.
# The model against the NumPy reference, tokenizer oracles, collectives on 2 MPI ranks, and the e2e
# tests of the real server over HTTP that reach code the others do not, one rank and 2-4 ranks with
# DP attention ("here" below: under ASan). Left to the normal build (docs/sanitizers.md says why):
# e2e_ownership (140 s here: /abort_request by owner over 64x450-token streams; aborts of queued and
# running requests run here in e2e_bad_input, Scheduler.Abort* and EngineThreads), e2e_structured_outputs_qwen3 (79 s: the
# same parsers and grammar as e2e_dp_attention_structured_outputs, single rank as the llama3 one)
# and e2e_image_openai_client (55 s: the same Qwen2.5-VL server and image path as e2e_image_inputs,
# payloads from the Node client).
# tokenizer_cli is left out: a dozen Qwen3 tokenizer loads under ASan pass its 120 s limit.
asan_sel='^(model_reference_hf|tokenizer_chat_template_vs_jinja2|tokenizer_npm_differential|parallel_mpi_np2|e2e_.*)$'
# e2e_image_budget bounds the server's peak RSS; ASan's quarantine keeps freed blocks resident
# (+200 MB there), so its bounds mean nothing under ASan (e2e_image_inputs covers the image path).
# The web page's browser tests drive headless Chromium against timed waits; the page is static bytes
# and its calls are the chat / completions routes the kept tests run (e2e_webui_off stays).
# DP-attention twins whose added code is rank-0 only (responses, metrics, the Node client's routes,
# prompt logprobs: e2e_tp_echo_logprobs carries those across ranks here), the Node clients' suites
# (the same parsers as the kept structured-output and tool tests) and e2e_sampling_defaults (its file
# reading runs here in SamplingDefaults.*) and e2e_tools_mistral_nemo (the Mistral parser and grammar of
# e2e_tools_mistral, which stays, under a 131k-token tokenizer) stay in the normal build too: the
# phase is CI's largest. So do the second servers of routes whose first stays (e2e_responses_reasoning,
# e2e_messages_thinking: the same output builders with reasoning; e2e_embeddings_off: the refusal),
# e2e_fair_share (57 s here; the single-rank twin of e2e_dp_attention_fair_share: its n choices and
# prompt logprobs run in the echo / logprobs tests kept) and e2e_api_tables (docs tables against the
# routes and flags: start-up errors, no new code). The thinking budget's twins (the server flag, NGRAM
# drafts, DP attention) run the forcing code e2e_reasoning_budget runs here.
asan_not='^(e2e_ownership|e2e_structured_outputs_qwen3|e2e_image_openai_client|e2e_image_budget|e2e_webui|e2e_webui_api_key|e2e_webui_completion|e2e_dp_attention_fair_share|e2e_dp_attention_(responses|metrics|openai_client|echo_logprobs)|e2e_js_clients|e2e_js_clients_structured|e2e_sampling_defaults|e2e_tools_mistral_nemo|e2e_lora_runtime|e2e_priority_scheduling|e2e_responses_reasoning|e2e_messages_thinking|e2e_embeddings_off|e2e_fair_share|e2e_api_tables|e2e_reasoning_budget_(server|ngram)|e2e_dp_attention_reasoning_budget)$'
# Also left to the normal build, for CI's time on a 2-core runner (under ASan each server start, with its
# tokenizer load under the slow unwinder, costs more than most of these tests' requests): twins whose
# server code a kept test runs (the DP-attention twins of sglang_fields, sigterm, embeddings, vllm
# prompt fields and masks, token-id logprobs; vllm masks with drafts; the admin routes' flag variants;
# Anthropic batches and batch priority beside e2e_batches, which TSan also runs), the chat-prompt
# tests (their templates render here in tokenizer_chat_template_vs_jinja2), the Qwen3-Coder and
# DeepSeek-V3 tool tests (their parsers run here in chat_output_test, e2e_tools_mistral keeps the
# route), flags and refusals (webui_off, keys_not_in_argv) and return_token_ids (ids beside the text
# in the output builders the kept tests run).
asan_not_time='^(e2e_dp_attention_(sglang_fields|sigterm|embeddings|token_ids_logprob|vllm_prompt_fields|vllm_masks)|e2e_token_ids_logprob|e2e_spec_vllm_masks|e2e_chat_prompt_(qwen3|llama3|qwen3_coder)|e2e_message_batches|e2e_batches_priority|e2e_admin_routes_(admin|tenants)_only|e2e_keys_not_in_argv|e2e_webui_off|e2e_return_token_ids|e2e_tools_(deepseekv3|qwen3_coder))$'

# asan_twins BUILD_DIR: the names of the selected tests in BUILD_DIR's CTest suite, as one regex.
# Only the names asan_sel matches: `ctest -N -R` also lists the fixtures' setup tests (the models
# they make), which the tests left in the suite need as well.
asan_twins() {
  local names
  names=$(ctest --test-dir "$1" -N -R "$asan_sel" -E "$asan_not|$asan_not_time" | sed -n 's/^ *Test *#[0-9]*: //p' |
    { grep -E "$asan_sel" || true; } | paste -sd'|')
  if [[ -n $names ]]; then echo "^($names)\$"; fi
}
