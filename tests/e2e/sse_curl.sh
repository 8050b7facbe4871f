#!/usr/bin/env bash
# SSE framing on the wire, checked with curl: event-stream content type, "data: " lines separated
# by blank lines, chunks parse as JSON, the stream ends with "data: [DONE]".
set -eu
URL=${DPSERVE_URL:?run through run_e2e.sh}
out=$(mktemp)
hdr=$(mktemp)
trap 'rm -f "$out" "$hdr"' EXIT
check_stream() {
  local path=$1 body=$2
  curl -sS -N --max-time 120 -D "$hdr" -H 'Content-Type: application/json' ${DPSERVE_API_KEY:+-H "Authorization: Bearer $DPSERVE_API_KEY"} \
    -d "$body" "$URL$path" >"$out"
  grep -qi '^content-type: text/event-stream' "$hdr" || { echo "no event-stream content type for $path"; cat "$hdr"; exit 1; }
  grep -qi '^transfer-encoding: chunked' "$hdr" || { echo "not chunked: $path"; exit 1; }
  /usr/bin/python3 - "$out" "$path" <<'PY'
import json, sys
raw = open(sys.argv[1], 'rb').read().decode('utf-8')
path = sys.argv[2]
assert raw.endswith('data: [DONE]\n\n'), f'{path}: stream must end with data: [DONE]'
events = raw.split('\n\n')[:-1]
assert len(events) >= 3, f'{path}: only {len(events)} events'
for e in events[:-1]:
    assert e.startswith('data: ') and '\n' not in e, f'{path}: bad event {e[:80]!r}'
    json.loads(e[6:])
chunks = [json.loads(e[6:]) for e in events[:-1]]
if path == '/v1/completions':
    assert all(c['object'] == 'text_completion' for c in chunks)
    assert chunks[-1]['choices'] == [] and chunks[-1]['usage']['completion_tokens'] == 20, chunks[-1]
    assert chunks[-2]['choices'][0]['finish_reason'] == 'length'
    assert all(c['choices'][0]['finish_reason'] is None for c in chunks[:-2])
print(f'{path}: {len(events)} events ok')
PY
}
check_stream /v1/completions '{"prompt":"Once upon a time","max_tokens":20,"temperature":0,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}'
check_stream /generate '{"text":"Once upon a time","stream":true,"sampling_params":{"max_new_tokens":20,"temperature":0}}'
# A bad streaming request fails before the stream starts: a plain JSON 400.
code=$(curl -sS -o "$out" -w '%{http_code}' --max-time 30 -H 'Content-Type: application/json' \
  -d '{"prompt":"a","stream":true,"max_tokens":-1}' "$URL/v1/completions")
[[ $code == 400 ]] || { echo "bad streaming request: got $code"; exit 1; }
grep -q '"param":"max_tokens"' "$out" || { echo "error body lacks param"; cat "$out"; exit 1; }
echo "sse_curl: ok"
