#!/usr/bin/env bash
# Builds the libFuzzer targets in the ASan + UBSan tree (build-asan, as scripts/sanitize.sh configures
# it: the same objects, plus coverage on the code under test) and runs each for a bounded time on its
# checked-in corpus and dictionary. New inputs go to a scratch folder, never into the repo.
# Exits non-zero on any crash, leak, timeout, OOM or broken property, naming the input file.
#   scripts/fuzz.sh [seconds-per-target] [target...]     (default 25 s, all targets)
# Env: FUZZ_OUT (scratch, default a mktemp dir, removed after a clean run), FUZZ_PARALLEL (targets
#      fuzzed at once, default nproc: a libFuzzer process uses one core, so on 2 cores two targets run
#      side by side, each still for its full time), DPSERVE_BUILD_JOBS (ninja -j, default 2).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
secs="${1:-25}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request_parse request_body tokenizer chat_template safetensors config control_message gguf image prefix_store constraint
                                     chat_output)
build="$here/build-asan"
out="${FUZZ_OUT:-$(mktemp -d /tmp/dpserve-fuzz.XXXXXX)}"
export DPSERVE_SHARED_DIR="${DPSERVE_SHARED_DIR:-$here/../shared}"

if ! command -v clang++ >/dev/null 2>&1 || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  "$here/scripts/install-deps.sh"
fi

t0=$(date +%s)
DPSERVE_ASAN_TARGETS="$(printf 'fuzz_%s ' "${targets[@]}")" bash "$here/scripts/sanitize.sh" --build-only asan
echo "fuzz: build took $(( $(date +%s) - t0 )) s"
echo "fuzz: scratch folder $out"

# UBSan findings abort (so libFuzzer saves the input); symbolized stacks make reports readable.
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
status=0
parallel="${FUZZ_PARALLEL:-$(nproc)}"
for t in "${targets[@]}"; do
  [ -d "$here/fuzz/corpus/$t" ] || { echo "fuzz: no corpus folder $here/fuzz/corpus/$t (unknown target '$t'?)"; exit 2; }
done

fuzz_one() {  # TARGET: runs it, exit status 0 when libFuzzer found nothing
  local t=$1
  local corpus="$here/fuzz/corpus/$t" dict="$here/fuzz/dict/$t.dict"
  mkdir -p "$out/$t/new" "$out/$t/artifacts"
  local args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
              -artifact_prefix="$out/$t/artifacts/")
  [ -f "$dict" ] && args+=(-dict="$dict")
  [ -f "$here/fuzz/options/$t.max_len" ] && args+=(-max_len="$(cat "$here/fuzz/options/$t.max_len")")
  # The first corpus folder receives new inputs: the scratch one, the repo's is read only.
  # timeout: a backstop in case libFuzzer itself wedges (its -timeout only covers single inputs).
  timeout -k 10 $((secs * 2 + 120)) nice -n 10 "$build/bin/fuzz_$t" "${args[@]}" "$out/$t/new" "$corpus" >"$out/$t/log" 2>&1
}

report() {  # TARGET RC
  local t=$1 rc=$2
  if [ "$rc" != 0 ]; then
    status=1
    echo "fuzz: $t FAILED (exit $rc); last lines of $out/$t/log:"
    tail -n 40 "$out/$t/log"
    for a in "$out/$t/artifacts/"*; do [ -e "$a" ] && echo "fuzz: crashing input: $a"; done
  else
    grep -E '^(stat::number_of_executed_units|stat::new_units_added)|^#[0-9]+.*DONE' "$out/$t/log" | sed "s/^/fuzz: $t: /" || true
  fi
}

# A pool of $parallel targets at a time; each result is reported as its target ends.
declare -A pid_target=()
wait_one() {
  local done_pid rc=0
  wait -n -p done_pid "${!pid_target[@]}" || rc=$?
  report "${pid_target[$done_pid]}" "$rc"
  unset "pid_target[$done_pid]"
}
for t in "${targets[@]}"; do
  while [ ${#pid_target[@]} -ge "$parallel" ]; do wait_one; done
  echo "fuzz: $t for $secs s (log $out/$t/log)"
  fuzz_one "$t" &
  pid_target[$!]=$t
done
while [ ${#pid_target[@]} -gt 0 ]; do wait_one; done
echo "fuzz: total $(( $(date +%s) - t0 )) s"
# A clean run's scratch (new inputs, logs) goes unless FUZZ_OUT named it; a failure's is kept.
if [ $status = 0 ] && [ -z "${FUZZ_OUT:-}" ]; then rm -rf "$out"; fi
exit $status
