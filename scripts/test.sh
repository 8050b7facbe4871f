#!/usr/bin/env bash
# Installs, builds and runs everything CI runs: the CTest suite (build/), then the sanitizer job
# (scripts/sanitize.sh: ASan+UBSan and TSan builds) and the bounded fuzz run (scripts/fuzz.sh), whose
# trees are built at idle priority while the suite runs. The tests the ASan phase runs
# (scripts/asan_tests.sh) run there, not in the suite too.
# README.md ("Tests") gives the time of each part on a 2-core machine.
#
#   scripts/test.sh [--quick] [ctest args...]
#     --quick      the CTest suite only (about 10 minutes of the ~33 once built)
#     ctest args   passed to ctest, e.g. -R e2e_ or -L reliability (implies --quick)
# Env: DPSERVE_SOAK_SECONDS (reliability_soak's length here, default 200; plain ctest: 300),
#      DPSERVE_FUZZ_SECONDS (fuzz time per target, default 15; scripts/fuzz.sh alone: 25).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi
[ $# -gt 0 ] && quick=1

t0=$(date +%s)
# Every build below (build/, build-asan/ with the fuzz targets, build-tsan/) compiles through ccache;
# with the base directory set, a second clone or worktree beside this one reuses the objects.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(dirname "$here")}"
# The soak overlaps the single-process tests (it is started first); 200 s keeps its second half, where
# RSS growth is measured, past the ~80 s the allocator took to settle on a loaded machine.
export DPSERVE_SOAK_SECONDS="${DPSERVE_SOAK_SECONDS:-200}"
bash scripts/setup.sh
# Open MPI refuses to run as root unless told; CI runs as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1

# The sanitizer trees (the ASan one with the fuzz targets) build while the suite runs, at idle
# priority (SCHED_IDLE): the suite leaves about a quarter of the CPU unused (its tests wait on servers,
# sockets and ranks), and an idle-priority compiler only ever gets a core no test wants. Each tree's
# phase below starts once that tree is built (build/background-builds/<tree>.ok), while the trees after
# it go on building.
marks="$here/build/background-builds"
bg=
if [ $quick = 0 ]; then
  rm -rf "$marks" && mkdir -p "$marks"
  idle=(chrt --idle 0)
  "${idle[@]}" true 2>/dev/null || idle=(nice -n 19)
  (
    "${idle[@]}" bash scripts/sanitize.sh --build-only asan && touch "$marks/asan.ok"
    "${idle[@]}" bash scripts/sanitize.sh --build-only tsan && touch "$marks/tsan.ok"
  ) >"$marks/log" 2>&1 &
  bg=$!
fi
await_tree() {  # TREE: returns once the background job has built it; fails (printing its log) if it could not
  while [ ! -e "$marks/$1.ok" ] && kill -0 "$bg" 2>/dev/null; do sleep 5; done
  [ -e "$marks/$1.ok" ] && return 0
  echo "test.sh: the background build of the $1 tree failed; its log ($marks/log) ends:" >&2
  tail -n 60 "$marks/log" >&2
  return 1
}

# In the full run, the model, tokenizer-oracle and e2e tests that the ASan phase runs
# (scripts/asan_tests.sh) run there only: once, where they also check memory and UB. --quick runs them here.
skip=()
if [ $quick = 0 ]; then
  source scripts/asan_tests.sh
  twins=$(asan_twins build)
  [ -n "$twins" ] && skip=(-E "$twins")
fi
suite=0
# CI may keep only a log's tail, which the sanitizer and fuzz phases fill: the suite's failures are
# named again as the very last lines (CTest lists them in LastTestsFailed.log).
failed_list="$here/build/Testing/Temporary/LastTestsFailed.log"
rm -f "$failed_list"
ctest --test-dir build -j2 --output-on-failure --timeout 900 "${skip[@]}" "$@" || suite=$?
echo "test.sh: CTest suite done at +$(( $(date +%s) - t0 )) s"
name_failures() {
  if [ $suite != 0 ] && [ -s "$failed_list" ]; then
    echo "test.sh: the CTest suite failed (exit $suite); its failed tests:"
    sed 's/^/  /' "$failed_list"
  fi
}
if [ $quick = 0 ]; then
  # The phases still run when the suite failed (every failure is printed), but the exit status keeps it.
  sanitizers=0
  for tree in asan tsan; do
    await_tree $tree || { sanitizers=1; continue; }
    echo "test.sh: $tree tree built by +$(( $(date +%s) - t0 )) s"
    bash scripts/sanitize.sh $tree || sanitizers=1
  done
  echo "test.sh: sanitizer job done at +$(( $(date +%s) - t0 )) s"
  # The fuzz targets were built with the ASan tree (fuzz/CMakeLists.txt).
  fuzz=1
  if [ -e "$marks/asan.ok" ]; then
    bash scripts/fuzz.sh "${DPSERVE_FUZZ_SECONDS:-15}" && fuzz=0
  fi
  wait "$bg" || true
  echo "test.sh: fuzz run done at +$(( $(date +%s) - t0 )) s"
  name_failures
  [ $sanitizers = 0 ] && [ $fuzz = 0 ] || exit 1
fi
exit $suite
