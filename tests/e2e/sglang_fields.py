#!/usr/bin/python3
"""SGLang's stop_regex and data_parallel_rank against the real `dpserve serve` (run_e2e.sh starts it on
the default model, stories260K, whose greedy continuation of BOS is known), over a real socket.

Expected values come from outside dpserve:
  * the greedy token ids and text are llama2.c run.c's for stories260K (expected/ in the shared models),
    decoded here with tok512.bin read in Python (llama2.c's decode rules: the space after BOS dropped,
    <0xNN> byte tokens);
  * stop_regex follows SGLang's rules (schedule_batch.py / detokenizer_manager.py): after each token
    the decoded output is searched with each pattern in the request's order (here with Python's re);
    the first match ends the request with finish_reason {"type": "stop", "matched": <the pattern>};
    stop strings are checked before the patterns; the text is not trimmed (SGLang's trim looks for the
    pattern's own text), so it ends with the token that completed the match;
  * data_parallel_rank: the request runs in that DP group (meta_info.dp_rank, and the per-group
    /metrics counters for the OpenAI routes); a rank outside [0, dp size) is a 400 naming the field.
DP_GROUPS (default 1) is the server's --dp-size.
"""
import json
import os
import re
import struct
import sys
import threading
import urllib.error
import urllib.request

URL = os.environ["DPSERVE_URL"]
SHARED = os.environ["DPSERVE_SHARED_DIR"]
GROUPS = int(os.environ.get("DP_GROUPS", "1"))
STORIES = os.path.join(SHARED, "models", "stories260K")
failures = []


def check(cond, what):
    print(("ok:   " if cond else "FAIL: ") + what, flush=True)
    if not cond:
        failures.append(what)


def call(path, body=None, timeout=120, stream=False):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw, status = r.read().decode(), r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read().decode(), e.code
    if stream and status == 200:
        return status, [json.loads(line[6:]) for line in raw.split("\n")
                        if line.startswith("data: ") and line != "data: [DONE]"]
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def load_vocab():
    with open(os.path.join(STORIES, "tok512.bin"), "rb") as f:
        data = f.read()
    pos, pieces = 4, []  # int32 max_token_length, then (float score, int32 len, bytes) per token
    while pos < len(data):
        _, n = struct.unpack_from("<fi", data, pos)
        pos += 8
        pieces.append(data[pos:pos + n])
        pos += n
    return pieces


VOCAB = load_vocab()


def decode(ids, prev=1):
    """llama2.c's decode of ids following `prev` (BOS = 1: a leading space is dropped)."""
    out = b""
    for t in ids:
        p = VOCAB[t]
        if prev == 1 and p.startswith(b" "):
            p = p[1:]
        m = re.fullmatch(rb"<0x([0-9A-F]{2})>", p)
        out += bytes([int(m.group(1), 16)]) if m else p
        prev = t
    return out.decode("utf-8", errors="replace")


with open(os.path.join(STORIES, "expected", "stories260K_greedy_n200.ids.txt")) as f:
    GREEDY = [int(x) for x in f.read().split()][1:]  # after BOS
with open(os.path.join(STORIES, "expected", "stories260K_greedy_n200.txt")) as f:
    GREEDY_TEXT = f.read()
assert decode(GREEDY) == GREEDY_TEXT, "the Python decoder disagrees with llama2.c's text"


def stop_at(patterns, stops=(), limit=120):
    """Where SGLang's rules end greedy generation: (tokens, matched) — stop strings first, then the
    patterns in order, after each token; None when nothing matches within `limit` tokens."""
    for k in range(1, limit + 1):
        text = decode(GREEDY[:k])
        for s in stops:
            if s in text:
                return k, s
        for p in patterns:
            if re.search(p, text):
                return k, p
    return None


def gen(sp, **extra):
    body = {"input_ids": [1], "sampling_params": dict({"temperature": 0, "max_new_tokens": 120}, **sp)}
    body.update(extra)
    return call("/generate", body, stream=extra.get("stream", False))


def test_stop_regex():
    s, b = gen({})
    check(s == 200 and b["output_ids"] == GREEDY[:120], "greedy /generate is llama2.c's continuation")
    for patterns in (r"named \w+\.", [r"zebra\d+", r"park"], [r"park", "Lily"], r"\bbig, [a-z]+ ball",
                     [r"Lily's (mom|dad)"]):
        plist = [patterns] if isinstance(patterns, str) else patterns
        k, matched = stop_at(plist)
        s, b = gen({"stop_regex": patterns})
        fr = b.get("meta_info", {}).get("finish_reason") if isinstance(b, dict) else None
        check(s == 200 and b["output_ids"] == GREEDY[:k],
              f"stop_regex {patterns!r}: stops after token {k}, where the output first matches "
              f"(got {len(b.get('output_ids', [])) if isinstance(b, dict) else b} tokens)")
        check(fr == {"type": "stop", "matched": matched}, f"... finish_reason names {matched!r} (got {fr})")
        check(isinstance(b, dict) and b.get("text") == decode(GREEDY[:k]),
              f"... the text is not trimmed: it ends with the matching token ({b.get('text')!r:.80})")
        # Streamed: the same end, in the last event.
        s, ev = gen({"stop_regex": patterns}, stream=True)
        last = ev[-1] if s == 200 and ev else {}
        check(last.get("text") == decode(GREEDY[:k]) and last.get("meta_info", {}).get("finish_reason") == fr,
              f"... streamed the same (last event {str(last)[:120]})")
    # A pattern that never matches does not end the request early.
    s, b = gen({"stop_regex": [r"zebra\d+", r"[{}]"], "max_new_tokens": 80})
    check(s == 200 and b["output_ids"] == GREEDY[:80] and b["meta_info"]["finish_reason"] ==
          {"type": "length", "length": 80}, "a stop_regex that never matches runs to max_new_tokens")
    # With stop strings: whichever the output reaches first; a stop string is trimmed, a regex is not.
    k, matched = stop_at(["Lily"], stops=["little"])
    s, b = gen({"stop_regex": "Lily", "stop": "little"})
    check(matched == "little" and b["meta_info"]["finish_reason"] == {"type": "stop", "matched": "little"} and
          b["text"] == decode(GREEDY[:k]).split("little")[0], f"stop 'little' before regex 'Lily' wins ({b['text']!r})")
    k, matched = stop_at(["Lily"], stops=["park"])
    s, b = gen({"stop_regex": "Lily", "stop": "park"})
    check(matched == "Lily" and b["meta_info"]["finish_reason"] == {"type": "stop", "matched": "Lily"} and
          b["text"] == decode(GREEDY[:k]), f"regex 'Lily' before stop 'park' wins ({b['text']!r})")
    # Bad patterns: a 400 naming the field, with PCRE2's reason.
    for bad, why in (("a(b", "missing closing parenthesis"), ("[z-a]", "range out of order"),
                     (["ok", 5], "string"), ({"p": 1}, "string")):
        s, b = gen({"stop_regex": bad})
        err = b.get("error", {}) if isinstance(b, dict) else {}
        check(s == 400 and err.get("param") == "stop_regex" and why in err.get("message", ""),
              f"stop_regex {bad!r}: 400 naming it and saying {why!r} (got {s} {err})")


def served_group(b):
    return b["meta_info"]["dp_rank"]


def metric(name, group):
    s, text = call("/metrics")
    for line in text.splitlines():
        if line.startswith(f'{name}{{dp_rank="{group}"}} '):
            return float(line.split()[-1])
    return None


def test_data_parallel_rank():
    for bad in (GROUPS, -1, 1.5, "0", True, 2 ** 64):
        for path, body in (("/generate", {"input_ids": [1], "sampling_params": {"max_new_tokens": 2}}),
                           ("/v1/completions", {"prompt": "Once", "max_tokens": 2}),
                           ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                                     "max_tokens": 2})):
            s, b = call(path, dict(body, data_parallel_rank=bad))
            err = b.get("error", {}) if isinstance(b, dict) else {}
            check(s == 400 and err.get("param") == "data_parallel_rank",
                  f"{path} data_parallel_rank={bad!r} with {GROUPS} group(s): 400 naming it (got {s} {err})")
    for g in range(GROUPS):
        # Concurrent pinned requests: the router would spread them; every one must run in group g.
        seen, lock = [], threading.Lock()

        def one(i):
            s, b = call("/generate", {"input_ids": [1, 400 + i], "data_parallel_rank": g,
                                      "sampling_params": {"max_new_tokens": 8, "temperature": 0}})
            with lock:
                seen.append(served_group(b) if s == 200 else f"status {s}")
        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        check(seen == [g] * 8, f"8 concurrent /generate pinned to {g} all ran there ({seen})")
        s, b = call("/generate", {"text": ["Once", "The cat"], "data_parallel_rank": g,
                                  "sampling_params": {"max_new_tokens": 4, "n": 3}})
        check(s == 200 and [served_group(x) for x in b] == [g] * 6,
              f"a batch of 2 prompts x n=3 pinned to {g} ran there ({[served_group(x) for x in b] if s == 200 else b})")
        # OpenAI routes: only group g's prefix-cache lookups grow (per-group counters in /metrics).
        before = [metric("dpserve_prefix_cache_query_tokens_total", h) for h in range(GROUPS)]
        s1, c = call("/v1/completions", {"prompt": ["Once upon", "A dog"], "max_tokens": 3, "data_parallel_rank": g})
        s2, ch = call("/v1/completions", {"prompt": "Tom and", "max_tokens": 3, "n": 2, "data_parallel_rank": g})
        after = [metric("dpserve_prefix_cache_query_tokens_total", h) for h in range(GROUPS)]
        grew = [None if a is None or b_ is None else a - b_ for a, b_ in zip(after, before)]
        check(s1 == 200 and s2 == 200 and all((d or 0) > 0 if h == g else d == 0 for h, d in enumerate(grew)),
              f"/v1/completions pinned to {g}: only group {g} looked up prompts (growth per group {grew})")


def main():
    test_stop_regex()
    test_data_parallel_rank()
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("all ok")


if __name__ == "__main__":
    main()
