// Detecting an MPI launcher from the environment (decides whether dpserve re-executes under mpirun).
#include <gtest/gtest.h>

#include <cstdlib>

#include "parallel/comm.h"

namespace dpserve {
namespace {

const char* kVars[] = {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK",
                       "MPI_LOCALNRANKS"};

TEST(LauncherEnv, DetectsOpenMpiAndPlainRuns) {
  for (const char* v : kVars) unsetenv(v);
  EXPECT_FALSE(launched_under_mpi());
  EXPECT_EQ(local_world_size(), 1);
  setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
  setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "3", 1);
  EXPECT_TRUE(launched_under_mpi());
  EXPECT_EQ(local_world_size(), 3);
  for (const char* v : kVars) unsetenv(v);
  setenv("PMI_SIZE", "2", 1);  // MPICH / Slurm launchers
  EXPECT_TRUE(launched_under_mpi());
  unsetenv("PMI_SIZE");
}

TEST(LauncherEnv, AbortWithoutMpiExitsWithCode) {
  EXPECT_EXIT(abort_job("no MPI here", 7), ::testing::ExitedWithCode(7), "no MPI here");
}

}  // namespace
}  // namespace dpserve
