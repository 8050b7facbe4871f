#!/usr/bin/env bash
# DP attention vs plain tensor parallelism on a Qwen3-MoE-like random model
# (hidden 1024, 16 layers, 16 heads / 4 KV heads, 32 experts top-4, expert FFN 768, bf16):
# decode tokens/s of 32 concurrent sequences for tp=2 with and without DP attention, run
# back to back, A B A B, and the KV bytes per token each rank holds.
#   bench/moe_dp_attention.sh [MODEL_DIR] [ROUNDS]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model="${1:-/tmp/dpserve-qwen3-moe-bench}"
rounds="${2:-2}"
bin="$here/build/bin/dpserve"
[ -f "$model/config.json" ] || /usr/bin/python3 "$here/tools/make_hf_model.py" --preset qwen3-moe-bench --out "$model"
prompts=$(mktemp)
for i in $(seq 1 32); do echo "$i"; done > "$prompts"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run() {  # prints decode tok/s and the KV line of rank 0
  local log
  log=$("$bin" generate --model-path "$model" --prompts-file "$prompts" -n 64 --ignore-eos --threads 1 "$@" 2>&1 >/dev/null)
  local tps kv
  tps=$(echo "$log" | sed -n 's/.*decode: [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tok\/s).*/\1/p' | tail -1)
  kv=$(echo "$log" | grep -o 'x [0-9.]* KiB/token' | head -1)
  echo "$tps $kv"
}
for r in $(seq 1 "$rounds"); do
  a=$(run --tp-size 2)
  b=$(run --tp-size 2 --dp-size 2 --enable-dp-attention)
  ta=${a%% *}; tb=${b%% *}
  echo "round $r: tp=2: ${ta} tok/s (KV ${a#* }); tp=2 dp=2 DP attention: ${tb} tok/s (KV ${b#* }); ratio DP/TP = $(awk -v a="$ta" -v b="$tb" 'BEGIN { printf "%.2f", b / a }')"
done
rm -f "$prompts"
