// gtest main for tests run under mpirun: MPI is initialised once; rank 0 prints the usual report and
// the other ranks print only their failures, prefixed with their rank. Each rank exits non-zero if
// any rank failed, so one failing rank fails the mpirun (and the CTest case).
#include <gtest/gtest.h>

#include <cstdio>

#include "parallel/comm.h"

namespace {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "rank %d: FAILED %s:%d\n%s\n", rank_, r.file_name() ? r.file_name() : "?", r.line_number(),
                 r.summary());
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  dpserve::MpiRuntime mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  if (mpi.world_rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(mpi.world_rank()));
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int32_t any = failed;
  dpserve::Comm::world().allreduce_max<int32_t>(std::span<int32_t>(&any, 1));
  if (mpi.world_rank() == 0)
    std::printf("%s on %d ranks\n", any ? "FAILED on at least one rank" : "PASSED on all", mpi.world_size());
  return any ? 1 : 0;
}
