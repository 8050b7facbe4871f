// dpserve: LLM inference on CPUs with data-parallel attention.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <exception>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "apps/dpserve/commands.h"
#include "apps/dpserve/launch.h"
#include "core/check.h"
#include "core/version.h"

namespace {
// " (rank N)" under an MPI launcher, so a failing rank says which it is.
std::string rank_tag() {
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
    if (const char* r = std::getenv(v); r && *r) return std::string(" (rank ") + r + ")";
  return "";
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
    return app.exit(e);
  } catch (const dpserve::Error& e) {
    std::fprintf(stderr, "dpserve%s: error: %s\n", rank_tag().c_str(), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpserve%s: internal error: %s\n", rank_tag().c_str(), e.what());
    return 2;
  }
  return 0;
}
