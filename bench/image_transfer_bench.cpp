// How materialized images should reach the ranks (issue 18's table, seed note 003 with real JPEGs):
//   (a) every rank materializes: rank 0 broadcasts each request's encoded file, and every rank of
//       the request's DP group decodes and resizes it itself;
//   (b) one broadcast per request: rank 0 materializes a request, then broadcasts its RGB image
//       (inside an engine step message) to every rank, one request after the other;
//   (s) one broadcast per step: rank 0 materializes every request, then one step message holding
//       all of them goes to every rank (dpserve's --image-transfer step-message);
//   (c) pipelined per step: a frontend thread on rank 0 materializes the requests one after the
//       other (as the HTTP handlers do) while the step loop sends what is ready through the
//       engine's own ImageTransfer: chunks of at most --image-bytes-per-step per step, only to the
//       request's group (dpserve's default, --image-transfer pipelined).
// Decoding and resizing are the server's own (vision/image_resize.h, Qwen2.5-VL's processor
// settings). Requests go to DP groups round robin (DP attention layout: --dp groups of world/dp
// ranks). No forward pass runs: the steps only move images, so wall time is the time until every
// rank of each request's group holds its image. Strategies run in the order given by --order, in
// one process, so their ratios come from the same machine state.
//
//   mpirun -np 2 build/bin/image_transfer_bench --dp 2 IMG1.jpg IMG2.jpg ...
#include <sys/resource.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <cstdio>
#include <deque>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/control_message.h"
#include "engine/image_transfer.h"
#include "parallel/comm.h"
#include "parallel/control_channel.h"
#include "parallel/topology.h"
#include "vision/image_resize.h"

using namespace dpserve;

namespace {

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::byte> to_bytes(const std::string& s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return std::vector<std::byte>(p, p + s.size());
}

}  // namespace

int main(int argc, char** argv) {
  MpiRuntime mpi(&argc, &argv);
  CLI::App app{"Image transfer to the ranks: every rank decodes / broadcast per request / per step / pipelined"};
  int requests = 10;
  int dp = 1;
  int64_t budget = int64_t(4) << 20;
  std::string order = "abscscba";
  std::vector<std::string> files;
  app.add_option("--requests", requests, "requests (images), cycling through the files")->capture_default_str();
  app.add_option("--dp", dp, "DP groups (DP attention: world / dp ranks each)")->capture_default_str();
  app.add_option("--image-bytes-per-step", budget, "(c): RGB bytes sent per step")->capture_default_str();
  app.add_option("--order", order, "strategies to run, in order (letters a, b, s, c; repeats are summed)")
      ->capture_default_str();
  app.add_option("files", files, "JPEG / PNG files")->required();
  CLI11_PARSE(app, argc, argv);
  Comm world = Comm::world();
  const bool root = world.rank() == 0;
  TopologyConfig tc;
  tc.tp_size = world.size();
  tc.dp_size = dp;
  tc.enable_dp_attention = dp > 1;
  tc.world_size = world.size();
  tc.rank = world.rank();
  const Topology topo = make_topology(tc);
  const int groups = world.size() / topo.attn_tp_size;
  // Qwen2.5-VL's preprocessor_config.json (min_pixels 3136, max_pixels 12845056).
  ImagePreprocessConfig pc;
  pc.max_pixels = 12845056;
  auto group_of = [&](int r) { return r % groups; };
  int mine = 0;  // requests this rank must end up holding
  for (int r = 0; r < requests; ++r) mine += group_of(r) == topo.attn_dp_rank;

  std::vector<std::string> encoded;
  if (root)
    for (int r = 0; r < requests; ++r) encoded.push_back(read_file(files[size_t(r) % files.size()]));
  ControlChannel channel(world);

  struct Totals {
    double wall = 0;
    std::vector<double> cpu;  // per rank
    int64_t broadcasts = 0, rank0_decodes = 0;
    int runs = 0;
  };
  Totals tot[4];
  const char* names[4] = {"(a) every rank decodes", "(b) broadcast per request", "(s) broadcast per step",
                          "(c) pipelined per step"};
  for (char which : order) {
    const int s = which == 'a' ? 0 : which == 'b' ? 1 : which == 's' ? 2 : which == 'c' ? 3 : -1;
    if (s < 0) {
      if (root) std::fprintf(stderr, "--order: unknown strategy '%c'\n", which);
      return 2;
    }
    world.barrier();
    const double t0 = now(), c0 = cpu_seconds();
    int held = 0;  // images this rank received whole
    int64_t broadcasts = 0;
    if (s == 0) {
      for (int r = 0; r < requests; ++r) {
        std::vector<std::byte> msg = root ? to_bytes(encoded[size_t(r)]) : std::vector<std::byte>{};
        channel.broadcast(msg);
        ++broadcasts;
        if (group_of(r) != topo.attn_dp_rank) continue;
        ImageInput img = materialize_image(
            std::string_view(reinterpret_cast<const char*>(msg.data()), msg.size()), pc, ImageLimits{});
        held += !img.rgb.empty();
      }
    } else if (s == 1) {
      for (int r = 0; r < requests; ++r) {
        StepControl c;
        if (root) {
          NewRequest nr;
          nr.id = uint64_t(r + 1);
          nr.group = group_of(r);
          nr.req.images.push_back(materialize_image(encoded[size_t(r)], pc, ImageLimits{}));
          c.new_requests.push_back(std::move(nr));
        }
        std::vector<std::byte> msg = root ? encode(c) : std::vector<std::byte>{};
        channel.broadcast(msg);
        ++broadcasts;
        for (const NewRequest& nr : decode_control(msg.data(), msg.size()).new_requests)
          held += nr.group == topo.attn_dp_rank && !nr.req.images.at(0).rgb.empty();
      }
    } else if (s == 2) {
      StepControl c;
      if (root)
        for (int r = 0; r < requests; ++r) {
          NewRequest nr;
          nr.id = uint64_t(r + 1);
          nr.group = group_of(r);
          nr.req.images.push_back(materialize_image(encoded[size_t(r)], pc, ImageLimits{}));
          c.new_requests.push_back(std::move(nr));
        }
      std::vector<std::byte> msg = root ? encode(c) : std::vector<std::byte>{};
      channel.broadcast(msg);
      ++broadcasts;
      for (const NewRequest& nr : decode_control(msg.data(), msg.size()).new_requests)
        held += nr.group == topo.attn_dp_rank && !nr.req.images.at(0).rgb.empty();
    } else {
      ImageTransfer xfer(topo, world, ImageTransferMode::kPipelined, budget);
      // Rank 0's frontend: materializes the requests in arrival order and hands them to the step loop.
      std::mutex mu;
      std::condition_variable cv;
      std::deque<NewRequest> ready;
      int produced = 0;
      std::thread frontend;
      if (root)
        frontend = std::thread([&] {
          for (int r = 0; r < requests; ++r) {
            NewRequest nr;
            nr.id = uint64_t(r + 1);
            nr.group = group_of(r);
            nr.req.images.push_back(materialize_image(encoded[size_t(r)], pc, ImageLimits{}));
            std::lock_guard lk(mu);
            ready.push_back(std::move(nr));
            ++produced;
            cv.notify_all();
          }
        });
      int taken = 0;
      for (;;) {
        StepControl c;
        if (root) {
          std::unique_lock lk(mu);
          // As the engine's idle wait: nothing queued to send and nothing new, so sleep until a
          // request is ready (the step loop never spins on an empty queue).
          cv.wait(lk, [&] { return !ready.empty() || xfer.sending() || produced == requests; });
          while (!ready.empty()) {
            c.new_requests.push_back(std::move(ready.front()));
            ready.pop_front();
            ++taken;
          }
          c.shutdown = taken == requests && c.new_requests.empty() && !xfer.sending();
          lk.unlock();
          xfer.plan(c);
        }
        std::vector<std::byte> msg = root ? encode(c) : std::vector<std::byte>{};
        channel.broadcast(msg);
        ++broadcasts;
        StepControl got = decode_control(msg.data(), msg.size());
        for (NewRequest& nr : xfer.take_ready()) held += !nr.req.images.at(0).rgb.empty();
        if (got.shutdown) break;
        for (NewRequest& nr : got.new_requests)
          if (nr.group == topo.attn_dp_rank) xfer.hold(std::move(nr));
        xfer.start(got.image_chunks);
        xfer.finish();
      }
      if (frontend.joinable()) frontend.join();
    }
    world.barrier();
    const double wall = now() - t0;
    const double cpu = cpu_seconds() - c0;
    if (held != mine) std::fprintf(stderr, "rank %d: %s delivered %d images, expected %d\n", world.rank(), names[s], held, mine);
    std::vector<double> cpus(size_t(world.size()));
    {
      std::vector<std::byte> one(sizeof(double));
      std::memcpy(one.data(), &cpu, sizeof cpu);
      auto all = world.gatherv(one, 0);
      if (root)
        for (size_t i = 0; i < all.size(); ++i) std::memcpy(&cpus[i], all[i].data(), sizeof(double));
    }
    Totals& t = tot[s];
    t.wall += wall;
    t.broadcasts += broadcasts;
    t.runs += 1;
    if (t.cpu.empty()) t.cpu.assign(size_t(world.size()), 0.0);
    for (size_t i = 0; i < cpus.size(); ++i) t.cpu[i] += cpus[i];
  }
  if (root) {
    std::printf("ranks %d, dp %d (%d rank(s) per group), %d requests (images from %zu files), budget %lld B/step\n",
                world.size(), groups, topo.attn_tp_size, requests, files.size(), (long long)budget);
    std::printf("%-28s %5s %9s %10s %s\n", "strategy", "runs", "req/s", "CPU s all", "CPU s per rank (0, 1, ...)");
    for (int s = 0; s < 4; ++s) {
      const Totals& t = tot[s];
      if (!t.runs) continue;
      double sum = 0;
      std::string per;
      for (double c : t.cpu) {
        sum += c / t.runs;
        per += (per.empty() ? "" : ", ") + std::to_string(c / t.runs).substr(0, 6);
      }
      std::printf("%-28s %5d %9.2f %10.3f %s\n", names[s], t.runs, requests * t.runs / t.wall, sum, per.c_str());
    }
    auto rate = [&](int s) { return tot[s].runs ? requests * tot[s].runs / tot[s].wall : 0.0; };
    auto cpu_all = [&](int s) {
      double sum = 0;
      for (double c : tot[s].cpu) sum += c / std::max(1, tot[s].runs);
      return sum;
    };
    if (tot[3].runs && tot[0].runs)
      std::printf("ratio: (c) CPU / (a) CPU = %.3f (saves %.0f %%)\n", cpu_all(3) / cpu_all(0),
                  100 * (1 - cpu_all(3) / cpu_all(0)));
    if (tot[3].runs && tot[1].runs) std::printf("ratio: (c) / (b) throughput = %.3f\n", rate(3) / rate(1));
    if (tot[3].runs && tot[2].runs) std::printf("ratio: (c) / (s) throughput = %.3f\n", rate(3) / rate(2));
    if (tot[3].runs && tot[0].runs) std::printf("ratio: (c) / (a) throughput = %.3f\n", rate(3) / rate(0));
  }
  return 0;
}
