#!/usr/bin/env bash
# Idle cost of a multi-rank server: CPU used per rank over 10 s with no requests,
# then the latency of a one-token completion that wakes it.
#   bench/idle_cpu.sh [build/bin/dpserve] [extra serve flags...]
set -euo pipefail
bin="${1:-build/bin/dpserve}"; shift || true
port="${DPSERVE_BENCH_PORT:-31577}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$bin" serve --tp-size 4 --dp-size 2 --enable-dp-attention --port "$port" "$@" > /tmp/dpserve-idle.$$.log 2>&1 &
launcher=$!
trap 'kill -TERM $launcher 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health" 2>/dev/null | grep -q 200 && break
  sleep 0.5
done
sleep 2
ranks=$(pgrep -f -- "$bin serve --tp-size 4" | while read -r p; do
  [ "$p" != "$launcher" ] && grep -qv mpirun /proc/$p/comm && echo "$p"; done || true)
hz=$(getconf CLK_TCK)
declare -A before
for p in $ranks; do before[$p]=$(awk '{print $14+$15}' "/proc/$p/stat"); done
sleep 10
for p in $ranks; do
  after=$(awk '{print $14+$15}' "/proc/$p/stat")
  awk -v d=$((after - before[$p])) -v hz="$hz" -v p="$p" 'BEGIN { printf "rank pid %s: %.2f%% of a core over 10 s idle\n", p, 100 * d / hz / 10 }'
done
t=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port/v1/completions" \
  -H 'Content-Type: application/json' -d '{"prompt": "Once upon a time", "max_tokens": 1}')
echo "wake-up: one-token completion answered in ${t} s"
