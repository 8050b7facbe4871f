// Run under mpirun by the abort test: the last rank fails, the others wait in a barrier that can only
// end if the failure takes the whole job down.
#include <string>

#include "parallel/comm.h"

int main(int argc, char** argv) {
  dpserve::MpiRuntime mpi(&argc, &argv);
  if (mpi.world_rank() == mpi.world_size() - 1) dpserve::abort_job("cannot open model /nonexistent (probe)", 3);
  dpserve::Comm::world().barrier();
  return 0;
}
