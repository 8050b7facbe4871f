#!/usr/bin/env bash
# Installs, builds and runs everything CI runs: the CTest suite (build/), then the sanitizer job
# (scripts/sanitize.sh: ASan+UBSan and TSan builds) and the bounded fuzz run (scripts/fuzz.sh).
#
#   scripts/test.sh [--quick] [ctest args...]
#     --quick      the CTest suite only (about a third of the time)
#     ctest args   passed to ctest, e.g. -R e2e_ or -L reliability (implies --quick)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi
[ $# -gt 0 ] && quick=1

t0=$(date +%s)
bash scripts/setup.sh
# Open MPI refuses to run as root unless told; CI runs as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
ctest --test-dir build -j2 --output-on-failure --timeout 900 "$@"
echo "test.sh: CTest suite done at +$(( $(date +%s) - t0 )) s"
if [ $quick = 0 ]; then
  bash scripts/sanitize.sh
  echo "test.sh: sanitizer job done at +$(( $(date +%s) - t0 )) s"
  bash scripts/fuzz.sh
  echo "test.sh: fuzz run done at +$(( $(date +%s) - t0 )) s"
fi
