"""Raw-socket checks of the header rules (RFC 9110 / 9112) against a running server (run by
run_e2e.sh: DPSERVE_URL). Each refused request gets its status and closes the connection, so
bytes after it (a smuggled second request) are never answered; good requests are unaffected."""
import json
import re
import os
import socket
import sys
import time

host, port = os.environ["DPSERVE_URL"].rsplit("//", 1)[1].split(":")
port = int(port)


def exchange(raw, wait=3.0):
    """Sends raw bytes; returns every byte the server sends until it closes (or `wait` passes)."""
    s = socket.create_connection((host, port), timeout=wait)
    s.sendall(raw)
    out, until = b"", time.time() + wait
    s.settimeout(0.3)
    while time.time() < until:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            return out, True
        out += chunk
    s.close()
    return out, False


def responses(data):
    return len(re.findall(rb"HTTP/1\.1 [1-5][0-9][0-9] ", data))


failures = []


def check(name, raw, want_status):
    data, closed = exchange(raw)
    head = data.split(b"\r\n", 1)[0].decode(errors="replace")
    n = responses(data)
    ok = head.startswith(f"HTTP/1.1 {want_status}") and n == 1 and closed
    if ok and want_status >= 400:
        body = data.split(b"\r\n\r\n", 1)[1]
        try:
            ok = "error" in json.loads(body)
        except ValueError:
            ok = False
    print(("ok  " if ok else "FAIL"), f"{name}: {head!r}, {n} response(s), closed={closed}")
    if not ok:
        failures.append(name)


smuggled = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
body = b'{"prompt": "a", "max_tokens": 1}'
pad = smuggled + b" " * (60 - len(smuggled))
check("space before the colon of Content-Length, body is a second request",
      b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length : 60\r\n\r\n" + pad,
      400)
check("NUL in a header value", b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n" + smuggled, 400)
check("HTTP/1.1 without Host", b"GET /v1/models HTTP/1.1\r\n\r\n" + smuggled, 400)
check("Expect: 200-ok", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Type: application/json\r\n"
      b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body, 417)
check("Content-Encoding: gzip", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
      b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body, 415)

# Good requests still work, pipelined on one connection (two answers, connection kept).
data, closed = exchange(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", wait=2)
if responses(data) != 2 or b"HTTP/1.1 200" not in data or closed:
    failures.append("pipelined good requests")
    print("FAIL pipelined good requests:", data[:200])
else:
    print("ok   two pipelined good requests answered, connection kept")
data, _ = exchange(b"GET /v1/models HTTP/1.0\r\n\r\n", wait=2)
if not data.startswith(b"HTTP/1.1 200"):
    failures.append("HTTP/1.0 without Host")
    print("FAIL HTTP/1.0 without Host:", data[:200])
else:
    print("ok   HTTP/1.0 without Host is answered")
# JSON sent as a form (`curl -d`, Python urllib) or as multipart is still read as JSON, at any size
# the body limit allows: cpp-httplib's own form parsing refused such bodies over 8 KiB with a 413.
body = json.dumps({"prompt": "a" * 12000}).encode()
for ctype in (b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x"):
    data, _ = exchange(b"POST /tokenize HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: " + ctype
                       + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body, wait=10)
    if not data.startswith(b"HTTP/1.1 200") or b'"tokens"' not in data:
        failures.append(f"{ctype.decode()} body")
        print(f"FAIL a 12 KB JSON body as {ctype.decode()}:", data[:300])
    else:
        print(f"ok   a 12 KB JSON body sent as {ctype.decode()} is read as JSON")
# A streamed answer to HTTP/1.0, which has no chunked encoding (RFC 9112 6.1): the events as they are,
# ended by the server closing the connection.
body = b'{"prompt": "Once", "max_tokens": 3, "stream": true}'
data, closed = exchange(b"POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: "
                        + str(len(body)).encode() + b"\r\n\r\n" + body, wait=10)
head, _, rest = data.partition(b"\r\n\r\n")
if (not head.startswith(b"HTTP/1.1 200") or b"chunked" in head.lower() or not closed or not rest.startswith(b"data: {")
        or not rest.endswith(b"data: [DONE]\n\n")):
    failures.append("HTTP/1.0 stream")
    print("FAIL HTTP/1.0 stream:", data[:400])
else:
    print("ok   a stream to HTTP/1.0 is plain events ended by the close")
# The access log writes a client's path with control characters %-encoded again: a %0A in the path
# (decoded by the HTTP parser) must not start a line of its own that looks like the server's.
forged = "FORGED-LINE-7731 127.0.0.1 POST /v1/chat/completions 200"
exchange(b"GET /nothing%0A" + forged.replace(" ", "%20").encode() + b"%0D HTTP/1.1\r\nHost: x\r\n"
         b"Connection: close\r\n\r\n")
time.sleep(0.5)
log_path = os.environ.get("DPSERVE_LOG")
if log_path:
    with open(log_path, "rb") as f:
        lines = f.read().decode("utf-8", "replace").splitlines()
    hits = [ln for ln in lines if "FORGED-LINE-7731" in ln]
    if not hits or any(ln.startswith("FORGED-LINE-7731") or "%0A" not in ln for ln in hits):
        failures.append("log injection")
        print("FAIL a %0A in the path forged a log line:", hits[:3])
    else:
        print("ok   a %0A in the path is logged as %0A, on the request's own line")
if failures:
    sys.exit("FAIL: " + "; ".join(failures))
print("PASS")
