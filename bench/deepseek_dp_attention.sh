#!/usr/bin/env bash
# DP attention vs tensor parallelism on the DeepSeek-V2-Lite-like shape (MLA + DeepSeekMoE, bf16,
# tools/make_hf_model.py --preset deepseek-v2-lite-bench), 2 ranks, 1 thread each:
#   tp:  --tp-size 2                                    (MLA latent replicated on both ranks)
#   dp:  --tp-size 2 --dp-size 2 --enable-dp-attention (each rank holds its own requests' latents)
# For each batch size (32 and 64 requests of 512 random prompt tokens, OUTPUT_LEN tokens out, greedy,
# EOS ignored) the two layouts run back to back, alternating which goes first (A B, B A, ...), and the
# ratio dp/tp of each round is printed. Then both run with --max-total-tokens fixed at what 32
# requests need, to count how many of 64 requests each can run at once (CAP_BATCH env: other than 64).
#   [IN_LEN=512] [CAP_BATCH=64] bench/deepseek_dp_attention.sh [MODEL_DIR] [ROUNDS] [OUTPUT_LEN] [BATCHES]
# Writes one JSON line per run (dpserve bench offline --json) to $DPSERVE_BENCH_OUT (default
# ./deepseek_dp_attention.jsonl) and a summary table to stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model="${1:-/tmp/dpserve-deepseek-v2-lite-bench}"
rounds="${2:-2}"
out_len="${3:-64}"
batches="${4:-32 64}"
in_len="${IN_LEN:-512}"  # prompt tokens (IN_LEN env: 8192 for the long-context race)
bin="$here/build/bin/dpserve"
jsonl="${DPSERVE_BENCH_OUT:-$PWD/deepseek_dp_attention.jsonl}"
[ -x "$bin" ] || { echo "build dpserve first ($bin)" >&2; exit 1; }
[ -f "$model/config.json" ] || /usr/bin/python3 "$here/tools/make_hf_model.py" --preset deepseek-v2-lite-bench --out "$model"
cat "$model"/*.safetensors > /dev/null  # page cache, so no run pays for reading the file
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# A rank waiting in a collective gives its core away instead of spinning: on a shared machine the
# spinning rank otherwise takes the CPU its partner needs to arrive (applies to both layouts).
export OMPI_MCA_mpi_yield_when_idle="${OMPI_MCA_mpi_yield_when_idle:-1}"
declare -A flags=([tp]="--tp-size 2" [dp]="--tp-size 2 --dp-size 2 --enable-dp-attention")

run() {  # layout batch [extra flags...] -> appends a JSON line, prints it
  local layout=$1 b=$2
  shift 2
  # shellcheck disable=SC2086
  "$bin" bench offline --model-path "$model" -b "$b" --input-len "$in_len" --output-len "$out_len" \
    --warmup-batches 0 --threads 1 --disable-radix-cache --json ${flags[$layout]} "$@" 2>/dev/null |
    tail -1 | /usr/bin/python3 -c 'import json,sys; j=json.loads(sys.stdin.read()); j["layout_name"]=sys.argv[1]; j["extra"]=" ".join(sys.argv[2:]); print(json.dumps(j))' "$layout" "$@" |
    tee -a "$jsonl"
}

summary() {  # one table row from a JSON line
  /usr/bin/python3 - "$1" <<'PY'
import json, sys
j = json.loads(sys.argv[1])
coll = "; ".join("%s %.0f us" % (k, v["mean_us"]) for k, v in j.get("collectives_rank0", {}).items()
                 if k != "vocab_allgather")
print("%-3s B=%-3d %-28s out %7.1f tok/s  prefill %7.1f tok/s  decode %7.1f ms/step  running %3d  "
      "KV/rank/request %.2f MiB  [%s]" % (j["layout_name"], j["batch_size"], j["extra"], j["output_tok_s"],
      j["prefill_tok_s"], j["decode_step_ms"], j["peak_running_requests"],
      j["kv_bytes_per_rank_per_running_request"] / 1048576, coll))
PY
}

echo "model $model, prompts $in_len tokens, $out_len out; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for b in $batches; do
  for r in $(seq 1 "$rounds"); do
    order="tp dp"
    [ $((r % 2)) -eq 0 ] && order="dp tp"
    declare -A tps=()
    for layout in $order; do
      line=$(run "$layout" "$b")
      summary "$line"
      tps[$layout]=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["output_tok_s"])' "$line")
    done
    echo "  round $r, B=$b: output throughput dp/tp = $(/usr/bin/python3 -c "print(f'{${tps[dp]} / ${tps[tp]}:.2f}')")"
  done
done
# Same memory per rank for both: the KV pool of each rank holds what half of CAP_BATCH requests need
# (CAP_BATCH=64 by default: room for 32; smaller values make a short run on a busy machine).
cap_batch="${CAP_BATCH:-64}"
cap=$((cap_batch / 2 * (in_len + out_len)))
for layout in tp dp; do
  line=$(run "$layout" "$cap_batch" --max-total-tokens "$cap")
  summary "$line"
done
