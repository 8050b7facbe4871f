// Inside src/parallel only: the communicator that is "the world" of this job. MPI_COMM_WORLD unless
// join_nodes() (node_join.h) merged several separately started node jobs into one.
#pragma once

#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

namespace dpserve {

MPI_Comm job_world();
// Takes ownership: disconnected from the other nodes and freed before MPI_Finalize.
void set_job_world(MPI_Comm world);

}  // namespace dpserve
