// SSE framing: events must not depend on where the network splits the bytes.
#include <gtest/gtest.h>

#include <random>

#include "bench_client/sse_parser.h"
#include "core/check.h"

namespace dpserve::bench {
namespace {

std::vector<SseEvent> parse_in_pieces(const std::string& s, const std::vector<size_t>& cuts, bool finish = true) {
  std::vector<SseEvent> out;
  SseParser p;
  auto h = [&](SseEvent&& e) { out.push_back(std::move(e)); };
  size_t prev = 0;
  for (size_t c : cuts) {
    p.feed(std::string_view(s).substr(prev, c - prev), h);
    prev = c;
  }
  p.feed(std::string_view(s).substr(prev), h);
  if (finish) p.finish(h);
  return out;
}

void expect_events(const std::vector<SseEvent>& got, const std::vector<std::pair<std::string, std::string>>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].event, want[i].first) << i;
    EXPECT_EQ(got[i].data, want[i].second) << i;
  }
}

const std::string kStream =
    ": keep-alive comment\r\n"
    "data: {\"a\":1}\r\n\r\n"
    "data:no-space\n\n"
    "event: usage\n"
    "data: line one\n"
    "data:  two leading spaces keep one\n"
    "\n"
    "id: 7\r"
    "data: cr only\r\r"
    "data: [DONE]\n\n";
const std::vector<std::pair<std::string, std::string>> kWant = {
    {"", "{\"a\":1}"},
    {"", "no-space"},
    {"usage", "line one\n two leading spaces keep one"},
    {"", "cr only"},
    {"", "[DONE]"},
};

TEST(BenchSse, WholeStream) { expect_events(parse_in_pieces(kStream, {}), kWant); }

TEST(BenchSse, EveryByteSeparately) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < kStream.size(); ++i) cuts.push_back(i);
  expect_events(parse_in_pieces(kStream, cuts), kWant);
}

TEST(BenchSse, EverySingleCutPosition) {
  // Includes cuts between CR and LF, which must not count as two line ends.
  for (size_t c = 1; c < kStream.size(); ++c) {
    SCOPED_TRACE(c);
    expect_events(parse_in_pieces(kStream, {c}), kWant);
  }
}

TEST(BenchSse, RandomCuts) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<size_t> cuts;
    for (size_t i = 1; i < kStream.size(); ++i)
      if (rng() % 4 == 0) cuts.push_back(i);
    expect_events(parse_in_pieces(kStream, cuts), kWant);
  }
}

TEST(BenchSse, CrLfSplitAcrossReadsIsOneLineEnd) {
  // "data: a" CR | LF "data: b" CRLF CRLF: one event "a\nb"; a stray LF would end the event early.
  expect_events(parse_in_pieces("data: a\r\ndata: b\r\n\r\n", {8}), {{"", "a\nb"}});
}

TEST(BenchSse, LlamaServerErrorLine) {
  expect_events(parse_in_pieces("data: {\"x\":1}\n\nerror: {\"code\":500}\n\n", {}),
                {{"", "{\"x\":1}"}, {"error", "{\"code\":500}"}});
}

TEST(BenchSse, FinishDeliversAnEventWithoutTheClosingBlankLine) {
  expect_events(parse_in_pieces("data: a\n\ndata: last", {}, false), {{"", "a"}});
  expect_events(parse_in_pieces("data: a\n\ndata: last", {}, true), {{"", "a"}, {"", "last"}});
}

TEST(BenchSse, CommentsAndEmptyEventsProduceNothing) {
  expect_events(parse_in_pieces(":a\n:b\n\n\n\nevent: x\n\nretry: 5\n\n", {}), {});
}

TEST(BenchSse, OverlongLineIsAnError) {
  SseParser p(16);
  auto h = [](SseEvent&&) {};
  EXPECT_THROW(p.feed("data: 0123456789abcdef", h), Error);
}

}  // namespace
}  // namespace dpserve::bench
