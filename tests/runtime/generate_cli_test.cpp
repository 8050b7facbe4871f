// `dpserve generate` on the bundled stories260K must print exactly what
// Karpathy's llama2.c run.c prints (-t 0.0 -n 200): the expected text and ids
// in shared/models/stories260K/expected were produced by run.c, not by us.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "core/shared_dir.h"

namespace {

std::string shared_file(const std::string& rel) {
  std::string p = dpserve::shared_dir() + "/" + rel;
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "reference file missing: " << p << " (set DPSERVE_SHARED_DIR)";
    return "";
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs a command, returns its stdout and exit status.
std::pair<std::string, int> run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {"", -1};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = pclose(p);
  return {out, WEXITSTATUS(st)};
}

const std::string kBin = DPSERVE_BIN;

TEST(GenerateCli, Stories260KGreedyMatchesLlama2cByteForByte) {
  std::string expected = shared_file("models/stories260K/expected/stories260K_greedy_n200.txt");
  ASSERT_FALSE(expected.empty());
  auto [out, rc] = run(kBin + " generate -n 200 --temperature 0 2>/dev/null");
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(out, expected);
}

TEST(GenerateCli, Stories260KIdsMatchAcrossKernelPathsAndThreads) {
  std::string ids_text = shared_file("models/stories260K/expected/stories260K_greedy_n200.ids.txt");
  std::vector<int> expected;
  std::stringstream ss(ids_text);
  for (int v; ss >> v;) expected.push_back(v);
  ASSERT_EQ(expected.size(), 201u);
  std::string model = dpserve::shared_dir() + "/models/stories260K/stories260K.bin";
  for (std::string env : {"", "DPSERVE_KERNELS=portable ", "DPSERVE_KERNELS=avx2 ", "DPSERVE_KERNELS=avx512 ",
                          "DPSERVE_KERNELS=avx512-bf16 "}) {
    for (int threads : {1, 2}) {
      auto [out, rc] = run(env + kBin + " generate --json -n 200 --threads " + std::to_string(threads) +
                           " --model-path " + model + " 2>/dev/null");
      ASSERT_EQ(rc, 0) << env;
      auto j = nlohmann::json::parse(out);
      std::vector<int> got = j["prompt_ids"].get<std::vector<int>>();
      auto o = j["output_ids"].get<std::vector<int>>();
      got.insert(got.end(), o.begin(), o.end());
      EXPECT_EQ(got, expected) << "kernels: " << env << " threads " << threads;
      EXPECT_EQ(j["finish_reason"], "length");
    }
  }
}

TEST(GenerateCli, BadFlagsAndPathsGiveClearErrors) {
  auto [o1, rc1] = run(kBin + " generate --model-path /nonexistent/model 2>&1");
  EXPECT_NE(rc1, 0);
  EXPECT_NE(o1.find("/nonexistent/model"), std::string::npos) << o1;
  auto [o2, rc2] = run(kBin + " generate --prompt-ids 1,x,3 2>&1");
  EXPECT_NE(rc2, 0);
  EXPECT_NE(o2.find("--prompt-ids"), std::string::npos) << o2;
  auto [o3, rc3] = run(kBin + " generate --prompt-ids 1,99999 -n 2 2>&1");
  EXPECT_NE(rc3, 0);
  EXPECT_NE(o3.find("99999"), std::string::npos) << o3;
  auto [o4, rc4] = run(kBin + " generate --top-p 0 2>&1");
  EXPECT_NE(rc4, 0);
  EXPECT_NE(o4.find("--top-p"), std::string::npos) << o4;
}

// Two sources of prompts at once are an error naming both (one of them used to run silently), and
// serve's numeric limits refuse what would wrap or mean nothing ("-1" bytes was 2^64 - 1: no limit).
TEST(GenerateCli, ConflictingPromptsAndOutOfRangeLimitsAreRefusedNamingTheFlag) {
  for (const std::string flags : {"--prompt 'The dog' --prompt-ids 1,403", "--prompt x --prompts-file /dev/null",
                                  "--prompt-ids 1 --prompts-file /dev/null"}) {
    auto [out, rc] = run(kBin + " generate -n 2 " + flags + " 2>&1");
    EXPECT_NE(rc, 0) << flags << ": " << out;
    EXPECT_NE(out.find("excludes"), std::string::npos) << flags << ": " << out;
  }
  auto [o1, rc1] = run(kBin + " generate -n 2 --prompts-are-ids 2>&1");
  EXPECT_NE(rc1, 0);
  EXPECT_NE(o1.find("--prompts-file"), std::string::npos) << o1;
  for (const std::string flag : {"--max-body-bytes -1", "--max-body-bytes 0", "--shutdown-timeout -5",
                                 "--http-read-timeout 0", "--max-stored-responses -1"}) {
    auto [out, rc] = run(kBin + " serve --port 0 " + flag + " 2>&1");
    EXPECT_NE(rc, 0) << flag;
    EXPECT_NE(out.find(flag.substr(0, flag.find(' '))), std::string::npos) << out;
  }
}

// Values that would wrap, open the server, or be silently ignored are start-up errors naming what
// is wrong: a seed of -7, an empty API key (an unset shell variable), a typo in DPSERVE_KERNELS or
// DPSERVE_BF16_PRODUCTS, and a layout that cannot work, refused once before any rank starts (it
// used to be an MPI_ABORT banner and one message per rank).
TEST(GenerateCli, WrappingValuesEmptyKeysAndBadLayoutsAreRefusedBeforeAnyRankStarts) {
  struct Case {
    std::string cmd, needle;
  };
  for (const Case& c : std::vector<Case>{
           {"generate -n 2 --seed -7", "--seed"},
           {"generate -n 2 --random-seed -1", "--random-seed"},
           {"serve --port 0 --api-key ''", "--api-key"},
           {"serve --port 0 --admin-api-key ''", "--admin-api-key"},
           {"generate -n 2 --tp-size 2 --dp-size 3 --enable-dp-attention", "--dp-size 3"},
           {"generate -n 2 --tp-size 2 --ep-size 3", "--ep-size 3"},
           {"bench serve --warmup-requests -1", "--warmup-requests"},
           {"bench serve --num-prompts -1", "--num-prompts"},
           {"serve --port 0 --served-model-name ''", "--served-model-name"},
           {"serve --port 0 --image-fetch-timeout 0", "not in range 0.001"},
       }) {
    auto [out, rc] = run(kBin + " " + c.cmd + " 2>&1");
    EXPECT_NE(rc, 0) << c.cmd << ": " << out;
    EXPECT_NE(out.find(c.needle), std::string::npos) << c.cmd << ": " << out;
    EXPECT_EQ(out.find("MPI_ABORT"), std::string::npos) << c.cmd << ": " << out;
  }
  auto [o1, rc1] = run("DPSERVE_API_KEY= " + kBin + " serve --port 0 2>&1");
  EXPECT_NE(rc1, 0);
  EXPECT_NE(o1.find("DPSERVE_API_KEY is set but empty"), std::string::npos) << o1;
  auto [o2, rc2] = run("DPSERVE_KERNELS=avx512bf16 " + kBin + " generate -n 2 2>&1");
  EXPECT_NE(rc2, 0);
  EXPECT_NE(o2.find("DPSERVE_KERNELS=avx512bf16"), std::string::npos) << o2;
  auto [o3, rc3] = run("DPSERVE_BF16_PRODUCTS=amx " + kBin + " generate -n 2 2>&1");
  EXPECT_NE(rc3, 0);
  EXPECT_NE(o3.find("DPSERVE_BF16_PRODUCTS=amx"), std::string::npos) << o3;
  EXPECT_EQ(o3.find("MPI_ABORT"), std::string::npos) << o3;
}

// Enum flags are parsed where they are defined: a bad value names the flag and the choices, from
// the command line and from the environment alike.
TEST(GenerateCli, EnumFlagsRejectUnknownValuesNamingTheFlag) {
  for (const std::string flag : {"--dp-padding-mode", "--load-balance-method", "--dispatch"}) {
    auto [out, rc] = run(kBin + " generate -n 2 " + flag + " nope 2>&1");
    EXPECT_NE(rc, 0) << flag;
    EXPECT_NE(out.find(flag), std::string::npos) << out;
  }
  auto [o1, rc1] = run(kBin + " generate -n 2 --dp-padding-mode maxlen 2>&1");
  EXPECT_NE(o1.find("max_len"), std::string::npos) << "the choices are listed: " << o1;
  auto [o2, rc2] = run("DPSERVE_DISPATCH=leader " + kBin + " generate -n 2 2>&1");
  EXPECT_NE(rc2, 0);
  EXPECT_NE(o2.find("--dispatch"), std::string::npos) << o2;
  // Every valid spelling is accepted (one rank: the values change nothing observable here).
  for (const std::string ok : {"--dp-padding-mode sum_len", "--dp-padding-mode sglang", "--dispatch group-leader",
                               "--load-balance-method least_tokens"}) {
    auto [out, rc] = run(kBin + " generate -n 2 " + ok + " 2>&1");
    EXPECT_EQ(rc, 0) << ok << ": " << out;
  }
}

// SGLang's --enable-dp-lm-head selects what dpserve always does; it is refused with that reason
// instead of being accepted and ignored.
TEST(GenerateCli, DpLmHeadFlagIsRefusedWithTheReason) {
  auto [out, rc] = run(kBin + " generate -n 2 --enable-dp-lm-head 2>&1");
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("--enable-dp-lm-head"), std::string::npos) << out;
  EXPECT_NE(out.find("always"), std::string::npos) << out;
}

TEST(GenerateCli, DumpLogitsHasOneRowPerPositionAndArgmaxIsTheToken) {
  std::string path = ::testing::TempDir() + "/logits.bin";
  auto [out, rc] = run(kBin + " generate --json --prompt-ids 1,403,407 -n 5 --dump-logits " + path + " 2>/dev/null");
  ASSERT_EQ(rc, 0);
  auto j = nlohmann::json::parse(out);
  auto outs = j["output_ids"].get<std::vector<int>>();
  ASSERT_EQ(outs.size(), 5u);
  std::ifstream in(path, std::ios::binary);
  std::vector<float> l((3 + 5 - 1) * 512);
  in.read(reinterpret_cast<char*>(l.data()), std::streamsize(l.size() * sizeof(float)));
  ASSERT_EQ(in.gcount(), std::streamsize(l.size() * sizeof(float)));
  in.peek();
  EXPECT_TRUE(in.eof()) << "more rows than prompt_len + new_tokens - 1";
  // Rows 2.. are the logits that chose output tokens 0..4 (greedy => argmax).
  for (int r = 2; r < 7; ++r) {
    const float* row = &l[size_t(r) * 512];
    int best = int(std::max_element(row, row + 512) - row);
    EXPECT_EQ(best, outs[size_t(r - 2)]) << "row " << r;
  }
}

}  // namespace
