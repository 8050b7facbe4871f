// How a step's heavy per-request inputs should reach the ranks (seed note 003):
//   (a) every rank materializes: the raw request text is broadcast, every rank parses it;
//   (b) one broadcast per request: rank 0 parses, then broadcasts each request's embeddings;
//   (c) one broadcast per step: rank 0 parses all, serializes the step once (msgpack), one broadcast.
// "Materializing" is real work: parsing a JSON list of floats, the form /generate receives
// input_embeds in. Reports wall time, CPU time summed over ranks, throughput and broadcasts.
//
//   mpirun -np 2 build/bin/control_broadcast_bench --requests 10 --floats 400000
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "parallel/comm.h"
#include "parallel/control_channel.h"
#include "engine/control_message.h"

using namespace dpserve;

namespace {

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::vector<float> materialize(const std::string& text) {
  return nlohmann::json::parse(text).get<std::vector<float>>();
}

std::vector<std::byte> to_bytes(const std::string& s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return std::vector<std::byte>(p, p + s.size());
}

}  // namespace

int main(int argc, char** argv) {
  MpiRuntime mpi(&argc, &argv);
  CLI::App app{"Per-step vs per-request broadcast of heavy request inputs"};
  int requests = 10;
  int64_t floats = 400000;
  app.add_option("--requests", requests, "requests arriving in one step")->capture_default_str();
  app.add_option("--floats", floats, "floats of input_embeds per request (sets the parse cost)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  Comm world = Comm::world();
  const bool root = world.rank() == 0;

  std::vector<std::string> texts;
  if (root) {
    for (int r = 0; r < requests; ++r) {
      std::string t = "[";
      for (int64_t i = 0; i < floats; ++i) t += (i ? "," : "") + std::to_string(0.001f * float((i * 7 + r) % 1000));
      texts.push_back(t + "]");
    }
  }
  if (root)
    std::printf("ranks %d, %d requests, %lld floats each (%.1f MB of JSON per request)\n", world.size(), requests,
                (long long)floats, texts.empty() ? 0.0 : double(texts[0].size()) / 1e6);
  if (root) std::printf("%-28s %10s %14s %12s %11s\n", "strategy", "wall s", "CPU s (ranks)", "requests/s", "broadcasts");

  // The engine's own channel: receivers wait with backoff instead of spinning, so CPU time
  // measures work, not polling.
  ControlChannel channel(world);
  auto bcast = [&](std::vector<std::byte>& msg) { channel.broadcast(msg); };
  // Rank 0's work per request in (b) and (c): parse once into the engine's request type.
  auto parsed_request = [&](int r) {
    NewRequest nr;
    nr.id = uint64_t(r);
    nr.req.input_embeds = materialize(texts[size_t(r)]);
    nr.req.input_embeds_rows = 1;
    return nr;
  };
  for (int strategy = 0; strategy < 3; ++strategy) {
    world.barrier();
    const double t0 = now(), c0 = cpu_seconds();
    int64_t broadcasts = 0;
    size_t got = 0;
    if (strategy == 0) {  // (a) raw text to everyone, everyone parses
      for (int r = 0; r < requests; ++r) {
        std::vector<std::byte> msg = root ? to_bytes(texts[r]) : std::vector<std::byte>{};
        bcast(msg);
        ++broadcasts;
        got += materialize(std::string(reinterpret_cast<const char*>(msg.data()), msg.size())).size();
      }
    } else if (strategy == 1) {  // (b) parse once, one broadcast per request
      for (int r = 0; r < requests; ++r) {
        StepControl c;
        if (root) c.new_requests.push_back(parsed_request(r));
        std::vector<std::byte> msg = root ? encode(c) : std::vector<std::byte>{};
        bcast(msg);
        ++broadcasts;
        got += decode_control(msg.data(), msg.size()).new_requests.at(0).req.input_embeds.size();
      }
    } else {  // (c) parse once, one message for the whole step
      StepControl c;
      if (root)
        for (int r = 0; r < requests; ++r) c.new_requests.push_back(parsed_request(r));
      std::vector<std::byte> msg = root ? encode(c) : std::vector<std::byte>{};
      bcast(msg);
      ++broadcasts;
      for (auto& nr : decode_control(msg.data(), msg.size()).new_requests) got += nr.req.input_embeds.size();
    }
    world.barrier();
    const double wall = now() - t0;
    int64_t cpu_us = int64_t((cpu_seconds() - c0) * 1e6);
    world.allreduce_sum(std::span<int64_t>(&cpu_us, 1));
    const double cpu = double(cpu_us) / 1e6;
    if (got != size_t(requests) * size_t(floats)) std::fprintf(stderr, "rank %d: got %zu floats\n", world.rank(), got);
    const char* names[] = {"(a) every rank parses", "(b) broadcast per request", "(c) broadcast per step"};
    if (root) std::printf("%-28s %10.3f %14.3f %12.1f %11lld\n", names[strategy], wall, cpu, requests / wall, (long long)broadcasts);
  }
  return 0;
}
