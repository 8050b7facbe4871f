#!/usr/bin/env bash
# Starts the real `dpserve serve` on a free loopback port, waits for /health, runs one test command
# against it (DPSERVE_URL, DPSERVE_PID, DPSERVE_LOG, DPSERVE_BIN in its environment), then stops the
# server with SIGTERM and requires exit code 0. Every phase is bounded in time.
#
#   run_e2e.sh DPSERVE_BIN [serve flags...] -- COMMAND [args...]
set -u
if [[ $# -lt 3 ]]; then
  echo "usage: $0 DPSERVE_BIN [serve flags...] -- COMMAND [args...]" >&2
  exit 2
fi
BIN=$1
shift
SERVE_ARGS=()
while [[ $# -gt 0 && $1 != "--" ]]; do SERVE_ARGS+=("$1"); shift; done
[[ ${1:-} == "--" ]] && shift
[[ $# -gt 0 ]] || { echo "run_e2e.sh: no test command" >&2; exit 2; }
[[ -x $BIN ]] || { echo "run_e2e.sh: $BIN is not an executable" >&2; exit 2; }

PY=/usr/bin/python3
PID=
start_server() {
  PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  LOG=$(mktemp /tmp/dpserve-e2e-XXXXXX.log)
  URL="http://127.0.0.1:$PORT"
  echo "run_e2e: $BIN serve --host 127.0.0.1 --port $PORT ${SERVE_ARGS[*]} (log $LOG)"
  "$BIN" serve --host 127.0.0.1 --port "$PORT" "${SERVE_ARGS[@]}" >"$LOG" 2>&1 &
  PID=$!
}

dump_log() { echo "---- server log (last 60 lines) ----"; tail -n 60 "$LOG"; echo "----"; }
# For a server that hangs (no /health, no exit after SIGTERM): every process under the launcher (mpirun,
# the ranks) with its state and kernel wait channel, and with gdb (when installed and allowed to attach)
# each thread's stack. A hang seen once in CI left only "the log stops here"; this says where each rank waits.
dump_stacks() {
  local pids=("$PID") i=0 kids
  while [[ $i -lt ${#pids[@]} ]]; do
    kids=$(pgrep -P "${pids[$i]}" 2>/dev/null | tr '\n' ' ')
    for k in $kids; do pids+=("$k"); done
    i=$((i + 1))
  done
  echo "---- server processes ----"
  ps -o pid,ppid,stat,wchan:24,etime,time,args -p "$(IFS=,; echo "${pids[*]}")" 2>/dev/null | cut -c1-200
  command -v gdb >/dev/null || { echo "(gdb not installed: no stacks)"; return; }
  for p in "${pids[@]}"; do
    [[ $(cat /proc/"$p"/comm 2>/dev/null) == dpserve ]] || continue
    echo "---- stacks of $p ----"
    timeout 60 gdb -p "$p" -batch -nx -ex 'set pagination off' -ex 'thread apply all bt 30' 2>&1 |
      grep -E '^(Thread|#)' | cut -c1-220 | head -n 400
  done
  echo "----"
}
cleanup() {
  if kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; fi
}
trap cleanup EXIT

# Up to 120 s for the model to load and every rank to report in. A port taken between choosing it and
# the server's bind (by another test's listener: a CI run lost one so) is retried with another, twice.
ready=0
for attempt in 1 2 3; do
  start_server
  for _ in $(seq 1 600); do
    if ! kill -0 "$PID" 2>/dev/null; then
      if [[ $attempt -lt 3 ]] && grep -q 'cannot listen' "$LOG"; then
        wait "$PID" 2>/dev/null
        echo "run_e2e: port $PORT taken, retrying"
        rm -f "$LOG"
        continue 2
      fi
      echo "run_e2e: the server exited before becoming healthy"; dump_log; exit 1
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$URL/health" || true)
    if [[ $code == 200 ]]; then ready=1; break; fi
    sleep 0.2
  done
  break
done
[[ $ready == 1 ]] || { echo "run_e2e: /health never returned 200"; dump_log; dump_stacks; exit 1; }

export DPSERVE_URL=$URL DPSERVE_PID=$PID DPSERVE_LOG=$LOG DPSERVE_BIN=$BIN
timeout --signal=TERM --kill-after=10 600 "$@"
rc=$?
if [[ $rc -ne 0 ]]; then echo "run_e2e: test command failed (exit $rc)"; dump_log; fi

# Graceful stop: SIGTERM (the test may already have sent it), then every rank must exit 0.
kill -TERM "$PID" 2>/dev/null
for _ in $(seq 1 600); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$PID" 2>/dev/null; then
  echo "run_e2e: the server did not exit within 60 s of SIGTERM"; dump_log; dump_stacks; exit 1
fi
wait "$PID"
src=$?
if [[ $src -ne 0 ]]; then echo "run_e2e: the server exited with $src after SIGTERM (want 0)"; dump_log; exit 1; fi
[[ $rc -eq 0 ]] || exit "$rc"
echo "run_e2e: ok"
rm -f "$LOG"
