"""docs/api.md's coverage tables ("Route and flag coverage": OpenAI routes, SGLang routes, SGLang
server flags) checked row by row against a running server and the binary (run by run_e2e.sh:
DPSERVE_URL, DPSERVE_BIN), so the docs cannot drift from the code.

Routes: "supported" must reach a handler (any answer but the unrouted 404 and no 5xx); "refused"
must be the unrouted 404 with an OpenAI error body (code not_found, "No route METHOD PATH").
Flags: "supported" (and every `--alias` named in its cell) must be an option of `serve --help`;
"refused" must stop `serve` at start-up (non-zero exit, in seconds) with a message naming the flag
that is not CLI11's generic one; "unknown option" must be CLI11's "not expected" error naming it.

usage: api_tables.py docs/api.md"""
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from serve_process import free_port  # noqa: E402

URL = os.environ["DPSERVE_URL"]
BIN = os.environ["DPSERVE_BIN"]
failures = []


def tables(md_path):
    """{section title: [(first cell without backticks, status cell)]} for the three coverage tables."""
    text = open(md_path, encoding="utf-8").read()
    start = text.index("## Route and flag coverage")
    out, section = {}, None
    for line in text[start:].splitlines():
        if line.startswith("## ") and section is not None:
            break  # the next top-level section
        if line.startswith("### "):
            section = line[4:].strip()
            out[section] = []
        elif section and line.startswith("| `"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            out[section].append((cells[0].strip("`"), cells[1]))
    return out


def kind(status):
    for k in ("supported", "refused", "unknown option"):
        if status.startswith(k):
            return k
    raise ValueError(f"status must start with supported / refused / unknown option: {status!r}")


def fail(what, why):
    print("FAIL", what, "--", why)
    failures.append(what)


def call(method, path):
    body = b"{}" if method in ("POST", "PUT") else None
    req = urllib.request.Request(URL + path, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def unrouted(status, body, method, path):
    if status != 404:
        return False
    try:
        err = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return err.get("code") == "not_found" and err.get("message") == f"No route {method} {path}"


def check_route(route, status_cell):
    method, path = route.split(" ", 1)
    path = path.replace("{id}", "no-such-id-0")
    status, body = call(method, path)
    k = kind(status_cell)
    if k == "supported":
        if unrouted(status, body, method, path) or status >= 500:
            fail(route, f"listed as supported, answered {status} {body[:200]!r}")
        else:
            print("ok  ", route, "->", status)
    elif k == "refused":
        if not unrouted(status, body, method, path):
            fail(route, f"listed as refused, answered {status} {body[:200]!r} (want the unrouted 404)")
        else:
            print("ok  ", route, "-> 404 not_found")
    else:
        fail(route, "a route is supported or refused")


def help_options():
    out = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, timeout=60).stdout
    names = set()
    for line in out.splitlines():
        m = re.match(r"^\s+(-\w,)?(--[A-Za-z0-9-]+(,--[A-Za-z0-9-]+)*)", line)
        if m:
            names.update(m.group(2).split(","))
    return names


def check_flag(args, status_cell, options):
    argv = args.split()
    flag = argv[0]
    k = kind(status_cell)
    if k == "supported":
        named = [flag] + [a for a in re.findall(r"`(--[A-Za-z0-9-]+)`", status_cell)]
        missing = [n for n in named if n not in options]
        if missing:
            fail(args, f"listed as supported, not an option of serve --help: {missing}")
        else:
            print("ok  ", args, "-> in --help")
        return
    # Loopback and a free port: a flag that should stop start-up but does not starts nothing public.
    env = {k2: v for k2, v in os.environ.items() if not k2.startswith("DPSERVE_") or k2 == "DPSERVE_SHARED_DIR"}
    cmd = [BIN, "serve", *argv, "--host", "127.0.0.1", "--port", str(free_port())]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        fail(args, "start-up went on (the flag was accepted)")
        return
    said = p.stdout + p.stderr
    generic = "not expected" in said
    if p.returncode == 0 or flag not in said:
        fail(args, f"exit {p.returncode}, output does not name {flag}: {said[:300]!r}")
    elif k == "refused" and generic:
        fail(args, f"listed as refused with a reason, but the binary says only: {said[:200]!r}")
    elif k == "unknown option" and not generic:
        fail(args, f"listed as an unknown option, but the binary says: {said[:200]!r}")
    else:
        print("ok  ", args, "->", said.splitlines()[0][:120])


def main():
    t = tables(sys.argv[1])
    want = {"OpenAI routes", "SGLang routes", "SGLang server flags"}
    if set(t) != want or any(len(t[s]) < 10 for s in want):
        fail("docs/api.md", f"coverage tables not found as expected: {sorted(t)} {[len(v) for v in t.values()]}")
        return 1
    for s in ("OpenAI routes", "SGLang routes"):
        seen = set()
        for route, status in t[s]:
            if route in seen:
                fail(route, "listed twice")
            seen.add(route)
            check_route(route, status)
    options = help_options()
    for args, status in t["SGLang server flags"]:
        check_flag(args, status, options)
    # The server is still serving after all of it.
    status, _ = call("GET", "/health")
    if status != 200:
        fail("/health", f"{status} after the route walk")
    n = sum(len(v) for v in t.values())
    print(f"{n} rows, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
