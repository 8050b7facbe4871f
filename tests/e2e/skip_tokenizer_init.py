"""--skip-tokenizer-init (SGLang's flag) on a model folder that has no tokenizer files (run by
run_e2e.sh against `dpserve serve --model-path <folder> --skip-tokenizer-init`: DPSERVE_URL,
DPSERVE_BIN; argv: the folder, a tokenizer folder for the offline reference). Over real sockets:
  * /generate with input_ids answers output_ids only (no text), whole and streamed, and they equal
    the offline `dpserve generate --prompt-ids` on the same model (given a tokenizer: the ids do not
    depend on it); stop_token_ids end the output at the id;
  * text anywhere (/generate text, stop strings, grammars, the OpenAI routes, /tokenize) is a 400
    naming the field and saying why; the server goes on serving;
  * without the flag, the same folder is a start-up error that names --skip-tokenizer-init.
"""
import http.client
import json
import os
import subprocess
import sys

host, port = os.environ["DPSERVE_URL"].rsplit("//", 1)[1].split(":")
BIN = os.environ["DPSERVE_BIN"]
MODEL, TOKENIZER = sys.argv[1], sys.argv[2]
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def post(path, body):
    c = http.client.HTTPConnection(host, int(port), timeout=120)
    c.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    raw = r.read().decode()
    c.close()
    return r.status, r.getheader("Content-Type", ""), raw


def offline(ids, n):
    out = subprocess.run([BIN, "generate", "--model-path", MODEL, "--tokenizer-path", TOKENIZER, "--prompt-ids",
                          ",".join(map(str, ids)), "-n", str(n), "--temperature", "0", "--json"],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["output_ids"]


PROMPTS = [[9707, 11, 1879], [151643, 100, 2000, 30000, 77]]
N = 8
for ids in PROMPTS:
    want = offline(ids, N)
    st, _, raw = post("/generate", {"input_ids": ids, "sampling_params": {"max_new_tokens": N, "temperature": 0}})
    j = json.loads(raw)
    check(st == 200 and j.get("output_ids") == want, f"/generate {ids}: output_ids {j.get('output_ids')} == offline {want}")
    check("text" not in j, "no 'text' in an ids-only answer")
    check(j["meta_info"]["prompt_tokens"] == len(ids) and j["meta_info"]["completion_tokens"] == N, "token counts")
    # Streamed: each event carries the ids so far, no text; the last equals the whole answer.
    st, ctype, raw = post("/generate", {"input_ids": ids, "stream": True,
                                        "sampling_params": {"max_new_tokens": N, "temperature": 0}})
    events = [e[6:] for e in raw.split("\n\n") if e.startswith("data: ")]
    check(st == 200 and ctype.startswith("text/event-stream") and events[-1] == "[DONE]", "stream framing")
    last = json.loads(events[-2])
    check(last["output_ids"] == want and all("text" not in json.loads(e) for e in events[:-1]),
          "streamed ids equal the whole answer, no text in any event")
    # stop_token_ids: the output ends at the first occurrence of the id (kept, as SGLang reports it).
    stop = want[3]
    st, _, raw = post("/generate", {"input_ids": ids, "sampling_params": {"max_new_tokens": N, "temperature": 0,
                                                                          "stop_token_ids": [stop]}})
    j = json.loads(raw)
    cut = want[: want.index(stop) + 1]
    check(st == 200 and j["output_ids"] == cut and j["meta_info"]["finish_reason"]["type"] == "stop",
          f"stop_token_ids [{stop}]: {j.get('output_ids')} == {cut}")

bad = [
    ("/generate", {"text": "hello"}, "text"),
    ("/generate", {"input_ids": [1, 2], "sampling_params": {"stop": ["x"]}}, "sampling_params.stop"),
    ("/generate", {"input_ids": [1, 2], "sampling_params": {"regex": "a+"}}, "sampling_params.regex"),
    ("/generate", {"input_ids": [1, 2], "sampling_params": {"json_schema": "{}"}}, "sampling_params.json_schema"),
    ("/v1/completions", {"prompt": "hello"}, "prompt"),
    ("/v1/completions", {"prompt": [1, 2, 3]}, "prompt"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, "messages"),
    ("/v1/responses", {"input": "hi"}, "input"),
    ("/tokenize", {"prompt": "hi"}, "prompt"),
    ("/detokenize", {"tokens": [1, 2]}, "tokens"),
]
for path, body, param in bad:
    st, _, raw = post(path, body)
    err = json.loads(raw).get("error", {})
    check(st == 400 and err.get("param") == param and err.get("code") == "no_tokenizer"
          and "--skip-tokenizer-init" in err.get("message", ""), f"{path} {json.dumps(body)[:60]} -> 400 {param}: {raw[:120]}")
st, _, raw = post("/generate", {"input_ids": PROMPTS[0], "sampling_params": {"max_new_tokens": 2}})
check(st == 200, "still serving after the refusals")

# Without the flag, this folder cannot start, and the error points at the flag.
r = subprocess.run([BIN, "serve", "--model-path", MODEL, "--port", "0"], capture_output=True, text=True, timeout=60)
check(r.returncode != 0 and "--skip-tokenizer-init" in r.stderr + r.stdout, f"no flag: start-up error ({r.stderr.strip()[-160:]})")

print(f"{len(failures)} failed" if failures else "all passed")
sys.exit(1 if failures else 0)
