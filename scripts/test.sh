#!/usr/bin/env bash
# Installs, builds and runs everything CI runs: the CTest suite (build/), then the sanitizer job
# (scripts/sanitize.sh: ASan+UBSan and TSan builds) and the bounded fuzz run (scripts/fuzz.sh).
# README.md ("Tests") gives the time of each part on a 2-core machine.
#
#   scripts/test.sh [--quick] [ctest args...]
#     --quick      the CTest suite only (about 10 minutes of the ~33 once built)
#     ctest args   passed to ctest, e.g. -R e2e_ or -L reliability (implies --quick)
# Env: DPSERVE_SOAK_SECONDS (reliability_soak's length here, default 200; plain ctest: 300),
#      DPSERVE_FUZZ_SECONDS (fuzz time per target, default 25).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi
[ $# -gt 0 ] && quick=1

t0=$(date +%s)
# Every build below (build/, build-asan/, build-tsan/, build-fuzz/) compiles through ccache; with the
# base directory set, a second clone or worktree beside this one reuses the objects.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(dirname "$here")}"
# The soak overlaps the single-process tests (it is started first); 200 s keeps its second half, where
# RSS growth is measured, past the ~80 s the allocator took to settle on a loaded machine.
export DPSERVE_SOAK_SECONDS="${DPSERVE_SOAK_SECONDS:-200}"
bash scripts/setup.sh
# Open MPI refuses to run as root unless told; CI runs as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
ctest --test-dir build -j2 --output-on-failure --timeout 900 "$@"
echo "test.sh: CTest suite done at +$(( $(date +%s) - t0 )) s"
if [ $quick = 0 ]; then
  bash scripts/sanitize.sh
  echo "test.sh: sanitizer job done at +$(( $(date +%s) - t0 )) s"
  bash scripts/fuzz.sh "${DPSERVE_FUZZ_SECONDS:-25}"
  echo "test.sh: fuzz run done at +$(( $(date +%s) - t0 )) s"
fi
