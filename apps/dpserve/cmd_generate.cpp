// `dpserve generate`: offline generation from one prompt (or a file of prompts), streamed to stdout.
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "apps/dpserve/commands.h"
#include "constrain/constraint.h"
#include "core/check.h"
#include "kernels/isa.h"
#include "apps/dpserve/launch.h"
#include "apps/dpserve/runtime_flags.h"
#include "engine/request_limits.h"
#include "engine/runtime.h"
#include "model/default_model.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "vision/image_input.h"
#include "vision/image_resize.h"

namespace dpserve::app {

namespace {

struct GenerateArgs {
  RuntimeFlags rf;
  std::string prompt, prompt_ids, prompts_file, dump_logits, dump_image_embeds;
  int64_t max_new_tokens = 256;
  float temperature = 0.0f, top_p = 1.0f, min_p = 0.0f;
  float repetition_penalty = 1.0f, frequency_penalty = 0.0f, presence_penalty = 0.0f;
  int32_t top_k = -1;
  int64_t seed = -1;
  bool ignore_eos = false, json = false, no_bos = false, prompts_are_ids = false;
  // Given on the command line, even as "": an empty value is an error, not "no prompt" (BOS alone).
  bool has_prompt = false, has_prompt_ids = false;
  std::string regex, json_schema, ebnf;  // an output constraint (at most one)
  std::vector<std::string> images;       // JPEG / PNG files, one per <|image_pad|> of the prompt
};

// --image: each file materialized as the server does (decoded, resized by the model's image
// processor rules, hashed); the k-th <|image_pad|> over the prompts, in order, takes the k-th image
// and is expanded to its token count. Returns each prompt's images.
std::vector<std::vector<ImageInput>> attach_images(const GenerateArgs& a, const std::string& model,
                                                   std::vector<std::vector<int32_t>>& prompts) {
  std::vector<std::vector<ImageInput>> per_prompt(prompts.size());
  if (a.images.empty()) return per_prompt;
  const VisionTokenIds ids = VisionTokenIds::load(model);
  if (!ids.takes_images()) fail("--image: the model at {} takes no images", model);
  const ImagePreprocessConfig pc = ImagePreprocessConfig::load(model);
  std::vector<ImageInput> images;
  for (const std::string& path : a.images) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("--image: cannot open {}", path);
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      images.push_back(materialize_image(ss.str(), pc, ImageLimits{}));
    } catch (const Error& e) {
      fail("--image {}: {}", path, e.what());
    }
  }
  size_t k = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    std::vector<int32_t> expanded;
    for (int32_t t : prompts[p]) {
      if (t != ids.image_pad) {
        expanded.push_back(t);
        continue;
      }
      if (k < images.size()) {
        expanded.insert(expanded.end(), size_t(images[k].tokens(pc)), t);
        per_prompt[p].push_back(images[k]);
      }
      ++k;
    }
    prompts[p] = std::move(expanded);
  }
  if (k != images.size())
    fail("--image: {} image(s) given, but the prompts hold {} <|image_pad|> token(s) (id {}; the chat format writes "
         "<|vision_start|><|image_pad|><|vision_end|> per image)",
         images.size(), k, ids.image_pad);
  return per_prompt;
}

// The output constraint of --regex / --json-schema / --ebnf (a file path or the text itself), or null.
std::shared_ptr<const constrain::Automaton> output_constraint(const GenerateArgs& a) {
  // A value that cannot be the text itself must be a file: a mistyped path is named, not compiled as text.
  auto text = [](const std::string& v, const char* flag, bool inline_text) {
    std::ifstream f(v);
    if (!f) {
      if (!inline_text) fail("{}: cannot open {} (give a file, or the text itself)", flag, v);
      return v;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  auto starts_json = [](const std::string& v) {
    const size_t i = v.find_first_not_of(" \t\r\n");
    return i != std::string::npos && (v[i] == '{' || v.compare(i, 4, "true") == 0 || v.compare(i, 5, "false") == 0);
  };
  constrain::ConstraintSpec spec;
  std::string flag;
  if (!a.regex.empty()) spec = {constrain::ConstraintKind::kRegex, a.regex}, flag = "--regex";
  if (!a.json_schema.empty())
    spec = {constrain::ConstraintKind::kJsonSchema, text(a.json_schema, "--json-schema", starts_json(a.json_schema))},
    flag = "--json-schema";
  if (!a.ebnf.empty())
    spec = {constrain::ConstraintKind::kEbnf, text(a.ebnf, "--ebnf", a.ebnf.find("::=") != std::string::npos)},
    flag = "--ebnf";
  if (flag.empty()) return nullptr;
  try {
    return constrain::compile_constraint(spec);
  } catch (const Error& e) {
    fail("{}: {}", flag, e.what());
  }
}

// `flag` names where the ids came from in an error: --prompt-ids, or a line of --prompts-file.
std::vector<int32_t> parse_ids(const std::string& s, const std::string& flag) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    try {
      size_t used = 0;
      long v = std::stol(item, &used);
      if (used != item.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument("");
      ids.push_back(int32_t(v));
    } catch (const std::exception&) {
      fail("{}: \"{}\" is not a token id (expected comma-separated non-negative integers)", flag, item);
    }
  }
  return ids;
}

struct Output {
  std::vector<int32_t> ids;
  std::string finish_reason, error;
  // Speculative decoding: steps that verified drafts for this prompt, drafted tokens, accepted ones.
  int64_t spec_verify_ct = 0, spec_drafted = 0, spec_accepted = 0;
};

// Prints the text of one request as its tokens come (only for a single prompt).
class Streamer {
 public:
  Streamer(const Tokenizer* tok, int32_t context_id) {
    if (tok) {
      dec_ = std::make_unique<IncrementalDecoder>(*tok, true);
      dec_->push(context_id);  // e.g. no leading space right after BOS
    }
  }
  std::string push(int32_t id) { return dec_ ? dec_->push(id) : std::string(); }
  std::string flush() { return dec_ ? dec_->flush() : std::string(); }

 private:
  std::unique_ptr<IncrementalDecoder> dec_;
};

// Limit messages name this command's flags.
std::string flag_name(RequestParam p) {
  switch (p) {
    case RequestParam::kPrompt: return "the prompt";
    case RequestParam::kMaxNewTokens: return "--max-new-tokens";
    case RequestParam::kTemperature: return "--temperature";
    case RequestParam::kTopP: return "--top-p";
    case RequestParam::kTopK: return "--top-k";
    case RequestParam::kMinP: return "--min-p";
    case RequestParam::kFrequencyPenalty: return "--frequency-penalty";
    case RequestParam::kPresencePenalty: return "--presence-penalty";
    case RequestParam::kRepetitionPenalty: return "--repetition-penalty";
    case RequestParam::kSeed: return "--seed";
    default: return field_name(p);
  }
}

SamplingParams sampling_params(const GenerateArgs& a) {
  SamplingParams sp;
  sp.temperature = a.temperature;
  sp.top_k = a.top_k;
  sp.top_p = a.top_p;
  sp.min_p = a.min_p;
  sp.repetition_penalty = a.repetition_penalty;
  sp.frequency_penalty = a.frequency_penalty;
  sp.presence_penalty = a.presence_penalty;
  if (a.seed >= 0) sp.seed = uint64_t(a.seed);
  sp.max_new_tokens = a.max_new_tokens;
  sp.ignore_eos = a.ignore_eos;
  // The sampling bounds need no model: a bad flag stops us before anything loads.
  if (auto v = RequestLimits{}.check_sampling(sp, 0, flag_name)) fail("{}", v->message);
  return sp;
}

// The prompts as token ids: a file (text or ids per line), --prompt-ids, --prompt, or BOS alone.
std::vector<std::vector<int32_t>> read_prompts(const GenerateArgs& a, const Tokenizer* tok, int32_t bos,
                                               const std::string& model) {
  auto encode = [&](const std::string& text) {
    if (!tok) fail("no tokenizer found for {}: give --tokenizer-path, or --prompt-ids", model);
    // The tokenizer's own special tokens, as Hugging Face's encode adds them: BOS only where the
    // model asks for one (Llama: yes; Qwen: add_bos_token false, no BOS).
    return tok->encode(text, !a.no_bos);
  };
  std::vector<std::vector<int32_t>> prompts;
  if (!a.prompts_file.empty()) {
    // "-" is standard input, so prompts can come down a pipe.
    std::ifstream file;
    if (a.prompts_file != "-") {
      file.open(a.prompts_file);
      if (!file) fail("--prompts-file: cannot open {}", a.prompts_file);
    }
    std::istream& in = a.prompts_file == "-" ? std::cin : file;
    for (std::string line; std::getline(in, line);) {
      // A file saved with CRLF line ends means the same prompts: the '\r' is the line end, not prompt text.
      if (!line.empty() && line.back() == '\r') line.pop_back();
      prompts.push_back(a.prompts_are_ids ? parse_ids(line, fmt::format("--prompts-file line {}", prompts.size() + 1))
                                          : encode(line));
      // Which line: in a file of thousands of prompts "a line" cannot be found.
      if (prompts.back().empty())
        fail("--prompts-file: line {} has no {}", prompts.size(), a.prompts_are_ids ? "token ids" : "tokens");
    }
    if (prompts.empty())
      fail("--prompts-file: {} has no prompts", a.prompts_file == "-" ? "standard input" : a.prompts_file);
  } else if (a.has_prompt_ids) {
    prompts.push_back(parse_ids(a.prompt_ids, "--prompt-ids"));
    if (prompts[0].empty()) fail("--prompt-ids: no ids given");
  } else if (a.has_prompt) {
    prompts.push_back(encode(a.prompt));
    if (prompts[0].empty())
      fail("--prompt: the prompt is empty (no tokens{}); give some text, or omit --prompt to start from BOS",
           a.no_bos ? " with --no-bos" : " and the model adds no BOS");
  } else {
    // No prompt: start from BOS alone, as llama2.c's run.c does.
    if (bos < 0) fail("the model has no BOS token: give --prompt or --prompt-ids");
    prompts.push_back({bos});
  }
  return prompts;
}

// Each prompt with the sampling settings against the engine's limits (vocabulary, context), which
// the engine would otherwise refuse one by one.
void check_requests(const std::vector<std::vector<int32_t>>& prompts, const SamplingParams& sp,
                    const RequestLimits& limits) {
  for (size_t i = 0; i < prompts.size(); ++i) {
    Request r;
    r.input_ids = prompts[i];
    r.params = sp;
    if (auto v = limits.check(r, flag_name))
      fail("{}{}", prompts.size() > 1 ? fmt::format("prompt {}: ", i + 1) : std::string(), v->message);
  }
}

// --dump-logits: the engine's step hands every position's logits to a file, in step order.
using File = std::unique_ptr<std::FILE, int (*)(std::FILE*)>;
File open_logits_dump(GenerateArgs& a) {
  File f(nullptr, &std::fclose);
  if (a.dump_logits.empty()) return f;
  // Every rank computes every row (the group's ranks must run the same rows); rank 0 alone writes.
  a.rf.rt.all_logits = true;
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
    if (const char* r = std::getenv(v); r && *r && std::string(r) != "0") return f;
  f.reset(std::fopen(a.dump_logits.c_str(), "wb"));
  if (!f) fail("--dump-logits: cannot write {}", a.dump_logits);
  a.rf.rt.logits_tap = [fp = f.get()](uint64_t, int64_t, std::span<const float> l) {
    std::fwrite(l.data(), sizeof(float), l.size(), fp);
  };
  return f;
}

struct Generated {
  std::vector<Output> outs;
  double t_first = 0;  // seconds to the first prompt's first token
  double t_end = 0;    // seconds to the last token
};

// Runs the prompts through the engine (this thread runs the step loop; a helper thread feeds the
// prompts and reads the streams). With `stream_to` the single prompt's text is printed as it comes.
Generated generate(Runtime& rt, const std::vector<std::vector<int32_t>>& prompts, const SamplingParams& sp,
                   const Tokenizer* stream_to, std::shared_ptr<const constrain::Automaton> constraint,
                   const std::vector<std::vector<ImageInput>>& images) {
  Generated g;
  g.outs.resize(prompts.size());
  const auto t0 = std::chrono::steady_clock::now();
  auto secs = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  rt.run_with_client([&](DpEngine& eng) {
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (size_t i = 0; i < prompts.size(); ++i) {
      Request r;
      r.input_ids = prompts[i];
      r.params = sp;
      r.constraint = constraint;
      r.images = images[i];
      streams.push_back(eng.enqueue(std::move(r)));
    }
    Streamer st(stream_to, prompts[0].back());
    auto print = [](const std::string& s) {
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
    };
    for (size_t i = 0; i < streams.size(); ++i) {
      Output& out = g.outs[i];
      Response resp;
      while (true) {
        if (!streams[i]->next(resp, std::chrono::milliseconds(1000))) continue;
        if (resp.spec_drafted > 0) {
          ++out.spec_verify_ct;
          out.spec_drafted += resp.spec_drafted;
          out.spec_accepted += resp.spec_accepted;
        }
        for (auto& t : resp.tokens) {
          if (out.ids.empty() && i == 0) g.t_first = secs();
          out.ids.push_back(t.token);
          if (stream_to) print(st.push(t.token));
        }
        if (resp.finished) {
          out.finish_reason = resp.finish_reason;
          out.error = resp.error;
          break;
        }
      }
    }
    if (stream_to) print(st.flush());
    g.t_end = secs();
  });
  return g;
}

// stdout: one JSON object per prompt (--json), or one text line per prompt when there are several
// (a single prompt's text was streamed already).
void print_outputs(const GenerateArgs& a, const std::vector<std::vector<int32_t>>& prompts, const Generated& g,
                   const Tokenizer* tok) {
  auto text = [&](size_t i) -> std::string {
    if (!tok) return "";
    Streamer d(tok, prompts[i].back());
    std::string s;
    for (auto id : g.outs[i].ids) s += d.push(id);
    return s + d.flush();
  };
  if (a.json) {
    for (size_t i = 0; i < prompts.size(); ++i) {
      nlohmann::json j;
      j["prompt_ids"] = prompts[i];
      j["output_ids"] = g.outs[i].ids;
      j["text"] = text(i);
      j["finish_reason"] = g.outs[i].finish_reason;
      j["prompt_tokens"] = prompts[i].size();
      j["completion_tokens"] = g.outs[i].ids.size();
      if (g.outs[i].spec_verify_ct > 0) {
        j["spec_verify_ct"] = g.outs[i].spec_verify_ct;
        j["spec_draft_tokens"] = g.outs[i].spec_drafted;
        j["spec_accepted_tokens"] = g.outs[i].spec_accepted;
      }
      j["time_to_first_token_s"] = g.t_first;
      j["total_seconds"] = g.t_end;
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    }
  } else if (prompts.size() > 1) {
    for (size_t i = 0; i < prompts.size(); ++i) {
      std::string t = text(i);
      for (auto& ch : t)
        if (ch == '\n') ch = ' ';
      std::cout << t << "\n";
    }
  }
  std::cout.flush();
}

// stderr: throughput and rank 0's step and control-plane counters.
void print_stats(const std::vector<std::vector<int32_t>>& prompts, const Generated& g, const WorkerCounters& wc) {
  int64_t prompt_tokens = 0, out_tokens = 0, verify = 0, drafted = 0, accepted = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    prompt_tokens += int64_t(prompts[i].size());
    out_tokens += int64_t(g.outs[i].ids.size());
    verify += g.outs[i].spec_verify_ct;
    drafted += g.outs[i].spec_drafted;
    accepted += g.outs[i].spec_accepted;
  }
  const double decode_s = g.t_end - g.t_first;
  const int64_t decode_tokens = out_tokens - int64_t(prompts.size());
  std::fprintf(stderr, "\nprompt: %lld tokens, first token after %.3f s (%.1f tok/s); decode: %lld tokens in %.3f s (%.1f tok/s)\n",
               (long long)prompt_tokens, g.t_first, g.t_first > 0 ? double(prompt_tokens) / g.t_first : 0.0,
               (long long)decode_tokens, decode_s, decode_s > 0 ? double(decode_tokens) / decode_s : 0.0);
  std::fprintf(stderr,
               "steps=%lld control_broadcasts=%lld control_bytes=%lld max_new_requests_in_a_step=%lld "
               "control_seconds=%.4f step_seconds=%.4f\n",
               (long long)wc.steps, (long long)wc.control_broadcasts, (long long)wc.control_bytes,
               (long long)wc.max_new_requests, wc.control_seconds, wc.busy_seconds);
  if (verify > 0)
    std::fprintf(stderr,
                 "speculative: verify_steps=%lld draft_tokens=%lld accepted_tokens=%lld accept_rate=%.3f "
                 "accept_length=%.2f\n",
                 (long long)verify, (long long)drafted, (long long)accepted, double(accepted) / double(drafted),
                 1.0 + double(accepted) / double(verify));
}

// stderr, every rank of a model that takes images: what the pipelined image transfer moved here.
void print_image_transfer(const Runtime& rt) {
  if (!rt.model().takes_images()) return;
  const ImageTransferCounters& c = rt.image_counters();
  std::fprintf(stderr, "image_transfer rank=%d bytes_in=%lld chunks_in=%lld bytes_sent=%lld requests_held=%lld\n",
               rt.rank(), (long long)c.bytes_in, (long long)c.chunks_in, (long long)c.bytes_sent,
               (long long)c.requests_held);
}

void run_generate(GenerateArgs& a) {
  relaunch_under_mpirun_if_needed(requested_world(a.rf), a.rf.rt.watchdog_timeout, a.rf.numa, a.rf.rt.threads);
  ModelLocation loc = resolve_model(a.rf.rt.model_path, a.rf.tokenizer_path);
  a.rf.rt.model_path = loc.model;
  a.rf.rt.sched.enable_prefix_cache = !a.rf.disable_radix_cache;
  a.rf.rt.image_embeds_dump_dir = a.dump_image_embeds;
  std::unique_ptr<Tokenizer> tok;
  if (!loc.tokenizer.empty()) tok = Tokenizer::load(loc.tokenizer);
  if (tok) a.rf.rt.eos_ids = tok->eos_ids();
  const SamplingParams sp = sampling_params(a);
  File dump = open_logits_dump(a);
  const auto constraint = output_constraint(a);
  if (constraint) {
    if (!tok) fail("--regex / --json-schema / --ebnf need a tokenizer (give --tokenizer-path)");
    a.rf.rt.tokenizer = tok.get();
  }

  auto rt = Runtime::start(a.rf.rt);
  if (!rt->engine()) {  // other ranks: serve steps until rank 0 is done
    rt->run();
    print_image_transfer(*rt);
    return;
  }
  const ModelConfig& cfg = rt->model_config();
  spdlog::info("{}", loc.why);
  spdlog::info("model: {} layers, hidden {}, {} heads / {} KV heads, vocab {}, {} weights{}, kernels {}; {}",
               cfg.n_layers, cfg.hidden, cfg.n_heads, cfg.n_kv_heads, cfg.vocab, dtype_name(cfg.dtype),
               a.rf.rt.quantization == Quantization::kNone
                   ? ""
                   : std::string(" quantized to ") + to_string(a.rf.rt.quantization),
               kernels::kernels_description(), rt->describe());

  // The other ranks are already in their step loop: a bad prompt must stop them too (through the
  // engine's shutdown), or they wait for a step that never comes and the job hangs.
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<ImageInput>> images;
  try {
    prompts = read_prompts(a, tok.get(), tok ? tok->bos_id() : cfg.bos_id, loc.model);
    images = attach_images(a, loc.model, prompts);
    check_requests(prompts, sp, rt->engine()->limits());
  } catch (...) {
    const std::exception_ptr why = std::current_exception();
    rt->run_with_client([&](DpEngine&) { std::rethrow_exception(why); });
    throw;  // run_with_client rethrows the client's exception; not reached
  }
  const bool stream_text = !a.json && prompts.size() == 1;
  const Generated g = generate(*rt, prompts, sp, stream_text ? tok.get() : nullptr, constraint, images);
  for (size_t i = 0; i < prompts.size(); ++i)
    if (g.outs[i].finish_reason == "error") fail("prompt {}: {}", i + 1, g.outs[i].error);
  print_outputs(a, prompts, g, tok.get());
  print_stats(prompts, g, rt->counters());
  print_image_transfer(*rt);
}

}  // namespace

void register_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* g = app.add_subcommand("generate", "Generate text offline from one or more prompts (no HTTP server)");
  add_runtime_flags(g, a->rf);
  // One source of prompts: given two, which one ran was a silent choice.
  CLI::Option* prompt =
      g->add_option("--prompt", a->prompt,
                    "Prompt text (BOS is prepended when the model has one); without a prompt, generation starts "
                    "from BOS alone")
          ->each([a](const std::string&) { a->has_prompt = true; });
  CLI::Option* ids =
      g->add_option("--prompt-ids", a->prompt_ids, "Prompt as comma-separated token ids, e.g. 1,5,9 (used as given)")
          ->each([a](const std::string&) { a->has_prompt_ids = true; });
  CLI::Option* file =
      g->add_option("--prompts-file", a->prompts_file,
                    "File with one prompt per line (- reads standard input), run together and spread over DP "
                    "groups; one output line each");
  prompt->excludes(ids)->excludes(file);
  ids->excludes(file);
  g->add_flag("--prompts-are-ids", a->prompts_are_ids, "Each line of --prompts-file is comma-separated token ids")
      ->needs(file);
  g->add_option("--max-new-tokens,-n", a->max_new_tokens,
                "Tokens to generate per prompt (at least 1; prompt + this must fit the context)")
      ->capture_default_str();
  g->add_option("--temperature,-t", a->temperature, "Sampling temperature; 0 = greedy")->capture_default_str();
  g->add_option("--top-k", a->top_k, "Keep the k most likely tokens (-1 = off)")->capture_default_str();
  g->add_option("--top-p", a->top_p, "Nucleus sampling mass (1 = off)")->capture_default_str();
  g->add_option("--min-p", a->min_p, "Drop tokens below min_p x the top probability (0 = off)")->capture_default_str();
  g->add_option("--repetition-penalty", a->repetition_penalty, "Penalty for tokens already seen (1 = off)")
      ->capture_default_str();
  g->add_option("--frequency-penalty", a->frequency_penalty, "OpenAI frequency penalty")->capture_default_str();
  g->add_option("--presence-penalty", a->presence_penalty, "OpenAI presence penalty")->capture_default_str();
  g->add_option("--seed", a->seed, "Seed for reproducible sampling (-1 = per-request default)")
      ->capture_default_str()->check(CLI::Range(int64_t(-1), std::numeric_limits<int64_t>::max()));
  auto* rx = g->add_option("--regex", a->regex, "Constrain each output to fully match this regular expression");
  auto* js = g->add_option("--json-schema", a->json_schema, "Constrain each output to JSON valid under this schema (a file or the text)");
  auto* eb = g->add_option("--ebnf", a->ebnf, "Constrain each output to this GBNF grammar (a file or the text; start rule: root)");
  rx->excludes(js)->excludes(eb);
  js->excludes(eb);
  g->add_option("--image", a->images,
                 "JPEG or PNG file for the next <|image_pad|> token of the prompt(s), in order (vision-language "
                 "models; repeatable)");
  g->add_flag("--ignore-eos", a->ignore_eos, "Keep generating past end-of-sequence tokens");
  g->add_flag("--no-bos", a->no_bos, "Do not add the tokenizer's special tokens (BOS) to a text prompt");
  g->add_flag("--json", a->json,
              "Print one JSON object per prompt on stdout: prompt_ids, output_ids, text, finish_reason, "
              "prompt_tokens, completion_tokens, and the run's timings (the same in every object: "
              "time_to_first_token_s of the first prompt, total_seconds to the last token of all)");
  g->add_option("--dump-logits", a->dump_logits,
                "Write float32 logits, row-major [positions, vocab]: one row per prompt position, then one per "
                "decode step (prompt_len + new_tokens - 1 rows); single prompt, any layout (every rank computes every row, rank 0 "
                "writes the file)");
  g->add_option("--dump-image-embeds", a->dump_image_embeds,
                "Debugging: every rank that runs the vision tower writes each request's image embeddings "
                "(float32, row-major [image tokens, hidden], its images in order) to DIR/rank<R>-req<id>.f32");
  g->callback([a] {
    if (!a->dump_logits.empty() && !a->prompts_file.empty()) fail("--dump-logits works with a single prompt");
    run_generate(*a);
  });
}

}  // namespace dpserve::app
