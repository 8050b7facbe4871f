#!/usr/bin/python3
"""Priority scheduling (--enable-priority-scheduling, SGLang's flag; the `priority` field of SGLang and vLLM)
against the real `dpserve serve` on the tiny echo model over the real Qwen3 vocabulary (a few ms a token,
so a long request holds its slot for seconds), started with --max-running-requests 1 so one request runs
at a time and the others wait.

What must hold: while a long request runs, a request of priority 0 and then one of priority 10 are sent
(/v1/completions and /generate); both wait (10 above the long one's 0 is not more than SGLang's default
preemption threshold, 10), and when the long one ends the later, more important one is admitted first, so
it finishes first; meanwhile /get_load reports the three requests, the two queued and their 8 prompt
tokens. A request of priority 11 sent while the long one runs preempts it (SGLang's priority
preemption): with one slot, it can only finish first if it took the slot, and the long one, recomputed
after it, still gives its own output; /metrics counts the preemption. Outputs still equal the greedy outputs
the same requests give alone (priority changes the order, never the tokens). A priority that is not an
integer is a 400 naming it.
"""
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
from check_tally import check, finish  # noqa: E402

URL = os.environ["DPSERVE_URL"]


def post(path, body, timeout=300):
    req = urllib.request.Request(URL + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


LOW = {"prompt": [5, 6, 7, 8], "max_tokens": 6, "temperature": 0, "ignore_eos": True, "priority": 0}
HIGH = {"input_ids": [9, 10, 11, 12], "priority": 10,
        "sampling_params": {"max_new_tokens": 6, "temperature": 0, "ignore_eos": True}}


def text_of(path, b):
    return b["choices"][0]["text"] if path == "/v1/completions" else b["text"]


class Race:
    """Requests sent on threads of their own: the order they finish in and their answers."""

    def __init__(self):
        self.done, self.outs, self.threads = [], {}, []
        self.lock = threading.Lock()

    def send(self, name, path, body):
        def run():
            s, b = post(path, body)
            with self.lock:
                self.done.append(name)
                self.outs[name] = (s, b)

        self.threads.append(threading.Thread(target=run))
        self.threads[-1].start()

    def finished(self):
        with self.lock:
            return list(self.done)

    def join(self):
        for t in self.threads:
            t.join(300)


def long_body(tokens):
    return {"prompt": [3, 4], "max_tokens": tokens, "temperature": 0, "ignore_eos": True}


def attempt(long_tokens):
    """One run; returns (conclusive, finish order, outputs)."""
    race = Race()
    race.send("long", "/v1/completions", long_body(long_tokens))
    time.sleep(0.3)
    race.send("low", "/v1/completions", LOW)
    time.sleep(0.3)  # the low one reaches the engine's queue first
    race.send("high", "/generate", HIGH)
    time.sleep(0.3)
    both_waited = race.finished() == []  # the long one still held the only slot when both were queued
    if both_waited:
        LOADS.append(queued_load())
    race.join()
    return both_waited, race.done, race.outs


LOADS = []


def queued_load():
    """SGLang's /get_load once the engine reports the two queued requests (its figures are per step)."""
    for _ in range(100):
        with urllib.request.urlopen(URL + "/get_load", timeout=30) as r:
            loads = json.loads(r.read().decode())
        if loads and loads[0].get("num_waiting_reqs") == 2:
            break
        time.sleep(0.01)
    return loads


def preemptions():
    with urllib.request.urlopen(URL + "/metrics", timeout=30) as r:
        text = r.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("dpserve_preemptions_total"))


def preemption(long_tokens, long_text):
    """A request more important than the running one by more than the threshold takes its slot."""
    before = preemptions()
    race = Race()
    race.send("long", "/v1/completions", long_body(long_tokens))
    time.sleep(0.3)
    race.send("urgent", "/v1/completions", dict(LOW, priority=11))
    race.join()
    done, outs = race.done, race.outs
    check("priority 11 preempted the running priority-0 request: it finished first", done[:1] == ["urgent"], str(done))
    check("/metrics counts the preemption", preemptions() >= before + 1, f"({before} -> {preemptions()})")
    check("the preempted request, recomputed, gives its own output", outs["long"][0] == 200 and
          text_of("/v1/completions", outs["long"][1]) == long_text)
    check("the urgent request's output is the low request's output alone", outs["urgent"][0] == 200 and
          outs["urgent"][1]["choices"][0]["text"] == ALONE_LOW[0])


ALONE_LOW = []


def main():
    # Alone first: the outputs priority must not change.
    s, alone_low = post("/v1/completions", LOW)
    check("the low request alone: 200", s == 200, str(alone_low)[:200])
    ALONE_LOW.append(text_of("/v1/completions", alone_low))
    s, alone_high = post("/generate", HIGH)
    check("the high request alone: 200", s == 200, str(alone_high)[:200])
    for long_tokens in (1200, 3000, 4000):
        conclusive, done, outs = attempt(long_tokens)
        if conclusive:
            break
    check("both requests waited behind the long one", conclusive, f"(finish order {done})")
    if conclusive:
        # One group: the long request running, the two 4-token prompts queued behind it.
        load = LOADS[-1][0] if LOADS and LOADS[-1] else {}
        check("/get_load: 3 requests, 2 queued, their 8 prompt tokens pending, the running one's tokens held",
              len(LOADS[-1]) == 1 and load.get("dp_rank") == 0 and load.get("num_reqs") == 3 and
              load.get("num_waiting_reqs") == 2 and load.get("num_pending_tokens") == 8 and
              load.get("num_tokens", 0) > 8, str(LOADS[-1:]))
        check("the more important request finished first", done.index("high") < done.index("low"), str(done))
        check("the low request's output is its output alone", outs["low"][0] == 200 and
              text_of("/v1/completions", outs["low"][1]) == text_of("/v1/completions", alone_low))
        check("the high request's output is its output alone", outs["high"][0] == 200 and
              text_of("/generate", outs["high"][1]) == text_of("/generate", alone_high))
    if conclusive:
        preemption(long_tokens, text_of("/v1/completions", outs["long"][1]))
    for bad in ("1", 1.5, 2 ** 40):
        s, b = post("/v1/completions", dict(LOW, priority=bad))
        err = b.get("error", {}) if isinstance(b, dict) else {}
        check(f"priority {bad!r}: 400 naming it", s == 400 and err.get("param") == "priority", f"{s} {err}")
    finish()


if __name__ == "__main__":
    main()
