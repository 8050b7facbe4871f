// bench serve's reading of a dpserve server's speculative-decoding counters from /metrics text.
#include "bench_client/server_metrics.h"

#include <gtest/gtest.h>

namespace dpserve::bench {
namespace {

TEST(ServerMetrics, ParsesTheThreeCountersAndNothingElse) {
  const std::string text =
      "# HELP dpserve_spec_draft_tokens_total Speculative decoding: drafted tokens\n"
      "# TYPE dpserve_spec_draft_tokens_total counter\n"
      "dpserve_spec_draft_tokens_total 120\n"
      "dpserve_spec_draft_tokens_total_extra 5\n"
      "dpserve_spec_accepted_tokens_total 45\n"
      "dpserve_spec_verify_steps_total 30\n"
      "dpserve_spec_accept_length 2.5\n";
  const auto c = parse_spec_counters(text);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->draft_tokens, 120);
  EXPECT_EQ(c->accepted_tokens, 45);
  EXPECT_EQ(c->verify_steps, 30);
}

TEST(ServerMetrics, MissingOrMalformedCountersGiveNothing) {
  EXPECT_FALSE(parse_spec_counters("").has_value());
  EXPECT_FALSE(parse_spec_counters("llamacpp:tokens_predicted_total 9\n").has_value());
  EXPECT_FALSE(parse_spec_counters("dpserve_spec_draft_tokens_total 1\ndpserve_spec_verify_steps_total 1\n").has_value());
  EXPECT_FALSE(parse_spec_counters("dpserve_spec_draft_tokens_total x\ndpserve_spec_accepted_tokens_total 1\n"
                                   "dpserve_spec_verify_steps_total 1\n")
                   .has_value());
}

}  // namespace
}  // namespace dpserve::bench
