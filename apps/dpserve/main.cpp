// dpserve: LLM inference on CPUs with data-parallel attention.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "apps/dpserve/commands.h"
#include "apps/dpserve/launch.h"
#include "core/check.h"
#include "core/sanitized.h"
#include "core/version.h"

namespace {
// " (rank N)" under an MPI launcher, so a failing rank says which it is.
std::string rank_tag() {
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
    if (const char* r = std::getenv(v); r && *r) return std::string(" (rank ") + r + ")";
  return "";
}

// Ends the process once main is done. Two CI runs saw dpserve, refusing a model at load, print its
// error and then die of SIGSEGV: Open MPI's progress thread (libopen-pal's progress_engine) faulted in
// ld.so, binding event_base_loop, while the process tore MPI and the libraries down (the first time in
// exit(), the second, with _exit here, in MPI_Finalize). Neither reproduced in thousands of runs since.
// So nothing tears down while that thread lives: a singleton ending on an error skips MPI_Finalize
// (MpiRuntime, comm.cpp), and _exit ends every thread at once; dpserve registers no atexit work, so
// flushing stdio is all exit() would have done. Sanitizer builds keep both: their leak check and
// reports run in exit().
[[noreturn]] void finish(int code) {
  if constexpr (dpserve::kSanitizedBuild) std::exit(code);
  std::fflush(nullptr);
  _exit(code);
}
}  // namespace

int main(int argc, char** argv) {
  // stdout carries generated text and JSON; logs go to stderr.
  spdlog::set_default_logger(spdlog::stderr_color_mt("dpserve"));
  spdlog::set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
  dpserve::app::remember_argv(argc, argv);
  CLI::App app{"dpserve: LLM inference server for CPUs with data-parallel attention"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("dpserve ") + dpserve::dpserve_version());
  dpserve::app::register_generate(app);
  dpserve::app::register_serve(app);
  dpserve::app::register_tokenize(app);
  dpserve::app::register_bench(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    finish(app.exit(e));
  } catch (const dpserve::Error& e) {
    std::fprintf(stderr, "dpserve%s: error: %s\n", rank_tag().c_str(), e.what());
    finish(1);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpserve%s: internal error: %s\n", rank_tag().c_str(), e.what());
    finish(2);
  }
  finish(0);
}
