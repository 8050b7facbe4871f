#!/usr/bin/env bash
# Sanitizer CI job (docs/sanitizers.md): builds build-asan (AddressSanitizer + UndefinedBehaviorSanitizer)
# and runs the unit, kernel, model, tokenizer and HTTP e2e tests there, then builds build-tsan
# (ThreadSanitizer) and runs the frontend/engine handoff tests there. Exits non-zero on any failed test
# and on any sanitizer report, including reports from processes whose exit code a test ignores.
#
#   scripts/sanitize.sh [--build-only] [asan|tsan]...   (default: both)
#     --build-only   configure and build the trees, run nothing (scripts/test.sh builds them this way
#                    at idle priority while the CTest suite runs)
# Env: DPSERVE_ASAN_TARGETS (build only these targets of build-asan: scripts/fuzz.sh builds its own),
#      DPSERVE_BUILD_JOBS (default 2).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

jobs="${DPSERVE_BUILD_JOBS:-2}"
supp="$here/tests/sanitizers"
source "$here/scripts/asan_tests.sh"
export DPSERVE_SHARED_DIR="${DPSERVE_SHARED_DIR:-$here/../shared}"
# Open MPI refuses to run as root unless told; CI runs as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1

# The e2e tests drive the server with the OpenAI Node client from tests/node (scripts/install-deps.sh).
[[ -d tests/node/node_modules ]] || bash scripts/install-deps.sh

build_only=0
if [[ ${1:-} == --build-only ]]; then build_only=1; shift; fi
phases=("$@")
[[ ${#phases[@]} -gt 0 ]] || phases=(asan tsan)

stamp() { date -u +%H:%M:%S; }
t_start=$(date +%s)

# Both trees build with clang: it compiles the instrumented code in far less CPU time than GCC 12
# (docs/sanitizers.md, "Time"); build/ stays on GCC, the compiler users build with.
configure_and_build() {  # DIR SANITIZER [targets...]
  local dir=$1 san=$2 extra=()
  shift 2
  # The ASan tree also holds the libFuzzer targets (fuzz/CMakeLists.txt; scripts/fuzz.sh runs them).
  [[ $san == address ]] && extra=(-DDPSERVE_FUZZ=ON)
  # CMake cannot switch an existing tree's compiler: a tree configured with another one is rebuilt.
  # The cache holds clang's path after the first configure and the bare name after a second one
  # (CMake 3.25): both are clang.
  if [[ -f $dir/CMakeCache.txt ]] && ! grep -qE '^CMAKE_CXX_COMPILER:[A-Z]*=(.*/)?clang\+\+$' "$dir/CMakeCache.txt"; then
    echo "== $(stamp) $dir was configured with another compiler: removing it"
    rm -rf "$dir"
  fi
  echo "== $(stamp) configure $dir (DPSERVE_SANITIZE=$san, clang)"
  cmake -S . -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDPSERVE_SANITIZE="$san" -DDPSERVE_BUILD_BENCH=OFF "${extra[@]}" >/dev/null
  echo "== $(stamp) build $dir ${*:-(all)}"
  cmake --build "$dir" -j "$jobs" ${1:+--target "$@"}
}

# Every sanitized process writes its reports to REPORTS/<tool>.<pid>; any such file fails the job.
check_reports() {  # REPORTS NAME
  local dir=$1 name=$2
  shopt -s nullglob
  local files=("$dir"/*)
  shopt -u nullglob
  if [[ ${#files[@]} -gt 0 ]]; then
    echo "== $name: ${#files[@]} sanitizer report file(s):"
    for f in "${files[@]}"; do echo "---- $f"; head -n 80 "$f"; done
    return 1
  fi
  echo "== $name: no sanitizer reports"
}

status=0

run_asan() {
  configure_and_build build-asan address ${DPSERVE_ASAN_TARGETS:-}
  [[ $build_only == 0 ]] || return 0
  local reports="$here/build-asan/sanitizer-reports"
  rm -rf "$reports" && mkdir -p "$reports"
  # halt_on_error: the first error ends the process (non-zero) rather than being one line in a log.
  # Leaks are checked at exit; Open MPI's own allocations kept past MPI_Finalize are suppressed (lsan.supp).
  # No detect_stack_use_after_return: GCC 12's fake stack frames are not 64-byte aligned, and AVX-512
  # aligned loads of local constant arrays then fault (a SEGV inside std::initializer_list copies).
  # intercept_tls_get_addr=0: GCC 12's runtime guesses a dynamic-TLS block's bounds from the two words
  # before it when its address is 16 mod 4096 (a pre-2.25 glibc header). glibc 2.36 mallocs these
  # blocks, so that guess reads ASan's own chunk header and LeakSanitizer's tracer dies scanning a
  # bogus range (google/sanitizers#1322; fixed in LLVM 17). Which address a block gets shifts with
  # every change in the number of small allocations before it. Static TLS is still scanned.
  export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:strict_init_order=1:check_initialization_order=1:intercept_tls_get_addr=0:log_path=$reports/asan"
  # Open MPI keeps allocations past MPI_Finalize in libraries without frame pointers: matching them to
  # lsan.supp needs the slow unwinder (fast_unwind_on_malloc=0), which costs 25x on allocation-heavy
  # code (JsonSchema.MultipleOfIntegers: 5.6 s with the fast one, 139 s with the slow). So only the
  # processes that start MPI get it: the e2e servers and the unit tests in $mpi_units, which run ranks.
  local lsan="suppressions=$supp/lsan.supp:print_suppressions=0"
  local mpi_units='^(GenerateCli|EngineThreads)\.'
  export LSAN_OPTIONS="$lsan:fast_unwind_on_malloc=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
  # Beside the unit tests (gtest: runtime, scheduler, radix cache, kernels, server units, tokenizer,
  # bench client, topology, engine handoff): the model, tokenizer-oracle, MPI and e2e tests of
  # scripts/asan_tests.sh, which says which and why.
  local mpi_set='^(model_reference_hf|parallel_mpi_np2|e2e_.*)$'
  echo "== $(stamp) asan: ctest"
  # The token-mask tests over the real 128k-152k vocabularies (Qwen3's, also with harmony's tags, Llama-3's,
  # Llama-2's) compare every mask with a brute-force reference: 2-5 s in the normal build, 3-5+ minutes each
  # under ASan. MaskOddVocab runs the same checks over a small vocabulary here; the normal build runs them
  # all. constrain_zod_corpus samples 50 schemas whose formats compile to products of automata: 5 s in the
  # normal build, past its 100 s limit under ASan; the same compiler paths run here in
  # constrain_compile_test (JsonSchema.ZodFormats, ...) and under ASan + UBSan in the fuzz_constraint target.
  LSAN_OPTIONS="$lsan" ctest --test-dir build-asan -j2 --no-tests=error --output-on-failure --timeout 600 \
    -L 'unit|handoff' -E "^(Mask(Qwen3|Llama3|Llama2ByteFallback|Harmony)\\.|constrain_zod_corpus\$)|$mpi_units" || status=1
  ctest --test-dir build-asan -j2 --no-tests=error --output-on-failure --timeout 600 -L 'unit|handoff' \
    -R "$mpi_units" || status=1
  # The tokenizer oracles start no MPI: the fast unwinder, leaks checked.
  LSAN_OPTIONS="$lsan" ctest --test-dir build-asan -j2 --no-tests=error --output-on-failure --timeout 900 \
    -R "$asan_sel" -E "$asan_not|$asan_not_time|$mpi_set" || status=1
  # The servers and probes start MPI, and Open MPI's own leaks are matched to lsan.supp only through the
  # slow unwinder, which walks the stack at every allocation: a server's start (its tokenizer's
  # hundreds of thousands of strings) then took most of each test's time. So these run with the fast
  # unwinder and no leak check at exit; every other ASan and UBSan check stays on. Leaks in the same
  # code are checked above: the server's units, the engine and ranks (EngineThreads, GenerateCli).
  ASAN_OPTIONS="${ASAN_OPTIONS/detect_leaks=1/detect_leaks=0}" LSAN_OPTIONS="$lsan" \
    ctest --test-dir build-asan -j2 --no-tests=error --output-on-failure --timeout 900 \
    -R "$mpi_set" -E "$asan_not|$asan_not_time" || status=1
  check_reports "$reports" asan || status=1
  unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS
}

run_tsan() {
  configure_and_build build-tsan thread dpserve engine_threads_test
  [[ $build_only == 0 ]] || return 0
  local reports="$here/build-tsan/sanitizer-reports"
  rm -rf "$reports" && mkdir -p "$reports"
  # One OpenMP thread per rank: the OpenMP runtime (clang's libomp here) is not TSan-instrumented, so
  # its barriers are invisible and every parallel region would look like a race (docs/sanitizers.md).
  # The handoff under test is between HTTP threads and the step thread, which this does not change.
  export OMP_NUM_THREADS=1 DPSERVE_THREADS=1
  export TSAN_OPTIONS="halt_on_error=0:exitcode=66:second_deadlock_stack=1:suppressions=$supp/tsan.supp:log_path=$reports/tsan"
  echo "== $(stamp) tsan: ctest"
  ctest --test-dir build-tsan --no-tests=error --output-on-failure --timeout 900 \
    -R '^(EngineThreads\..*|e2e_concurrency|e2e_bad_input|e2e_http_edges|e2e_sigterm|e2e_responses_background|e2e_batches|e2e_uploads|e2e_message_batches)$' || status=1
  check_reports "$reports" tsan || status=1
  unset TSAN_OPTIONS OMP_NUM_THREADS DPSERVE_THREADS
}

for p in "${phases[@]}"; do
  case $p in
    asan) run_asan ;;
    tsan) run_tsan ;;
    *) echo "usage: $0 [--build-only] [asan|tsan]..." >&2; exit 2 ;;
  esac
done

echo "== $(stamp) sanitize.sh: $(( $(date +%s) - t_start )) s, $([[ $status == 0 ]] && echo PASS || echo FAIL)"
exit $status
