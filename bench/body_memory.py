#!/usr/bin/python3
"""Peak RSS of a `dpserve serve` process per request body: large token-id arrays and long texts.

For each body the server's peak RSS is reset (`echo 5 > /proc/PID/clear_refs`), one request is sent,
and the growth of VmHWM over the VmRSS before is printed with its ratio to the body's size. Bodies:
  * /generate `input_ids`, /v1/completions `prompt` as ids, /v1/embeddings `input` as ids (a second
    server with --is-embedding): N ids of --digits digits each (3: "123,", ~4 bytes of body an id);
  * /v1/completions `prompt` as text ("hello " repeated), which is tokenized before it is refused.
The model has a 4096-token context, so every large body is a 400 naming the context (or a 413).

  bench/body_memory.py --bin build/bin/dpserve [--ids 1e6,3e6,8e6] [--text-mb 4,12] [--port 18300]

Without --model it makes a tiny random Qwen3 with the Qwen3 tokenizer (tools/make_hf_model.py,
DPSERVE_SHARED_DIR or ../shared for the tokenizer).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from serve_process import MPI_ENV, ServeProcess, proc_bytes, wait_healthy  # noqa: E402


def post(url, path, body):
    req = urllib.request.Request(url + path, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            r.read()
            return r.status, ""
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()).get("error", {}).get("message", "")


def measure(url, pid, path, body):
    time.sleep(0.3)  # the previous request's thread frees its body after replying
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    rss0 = proc_bytes(pid, "VmRSS")
    status, msg = post(url, path, body)
    grew = proc_bytes(pid, "VmHWM") - rss0
    mb = len(body) / 1e6
    print(f"{path:18s} {mb:7.1f} MB body  status {status}  peak +{grew / 1e6:7.0f} MB  = {grew / len(body):5.1f}x"
          f"  ({msg[:70]})", flush=True)
    return grew / len(body)


def id_body(field, n, extra, digits=3):
    lo = 10 ** (digits - 1)
    ids = ",".join(str(lo + i % (9 * lo)) for i in range(n))
    return ('{"' + field + '": [' + ids + ']' + extra + '}').encode()


class Server:
    """ServeProcess on a free port, or on --port when given (exploratory runs keep to a port range)."""

    def __init__(self, args, model, *flags):
        flags = ["--model-path", model, "--served-model-name", "m", "--threads", "1", "--max-total-tokens", "8192",
                 "--max-body-bytes", str(args.max_body_mb << 20), *flags]
        self.sp = None
        if args.port:
            cmd = [args.bin, "serve", "--host", "127.0.0.1", "--port", str(args.port), *flags]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         env=dict(os.environ, **MPI_ENV), start_new_session=True)
            if not wait_healthy(args.port, server=self.proc):
                raise SystemExit("the server did not start")
            self.url, self.pid = f"http://127.0.0.1:{args.port}", self.proc.pid
        else:
            self.sp = ServeProcess(args.bin, *flags, quiet=True)
            self.url, self.pid = self.sp.url, self.sp.proc.pid

    def stop(self):
        if self.sp:
            self.sp.stop()
        else:
            self.proc.terminate()
            self.proc.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model")
    ap.add_argument("--ids", default="1e6,3e6,8e6", help="id counts, comma-separated")
    ap.add_argument("--text-mb", default="4,12", help="text prompt sizes in MB, comma-separated")
    ap.add_argument("--digits", type=int, default=3, help="digits per id (3: ~4 body bytes an id)")
    ap.add_argument("--max-body-mb", type=int, default=64)
    ap.add_argument("--no-embeddings", action="store_true")
    ap.add_argument("--port", type=int, help="serve on this port (default: a free one)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="body_memory.")
    try:
        model = args.model
        if not model:
            model = os.path.join(tmp, "m")
            shared = os.environ.get("DPSERVE_SHARED_DIR", os.path.join(HERE, "..", "..", "shared"))
            subprocess.run([sys.executable, os.path.join(HERE, "..", "tools", "make_hf_model.py"), "--arch", "qwen3",
                            "--dtype", "bf16", "--quiet", "--out", model, "--vocab-size", "151936",
                            "--hidden-size", "64", "--intermediate-size", "128", "--num-hidden-layers", "1",
                            "--num-attention-heads", "2", "--num-key-value-heads", "1", "--head-dim", "32",
                            "--max-position-embeddings", "4096", "--tokenizer-dir",
                            os.path.join(shared, "tokenizers", "qwen3")], check=True)
        counts = [int(float(x)) for x in args.ids.split(",") if x]
        srv = Server(args, model)
        try:
            print(f"server pid {srv.pid}, RSS {proc_bytes(srv.pid, 'VmRSS') / 1e6:.0f} MB", flush=True)
            for n in counts:
                measure(srv.url, srv.pid, "/generate", id_body("input_ids", n, ', "sampling_params": {"max_new_tokens": 1}',
                                                           args.digits))
                measure(srv.url, srv.pid, "/v1/completions", id_body("prompt", n, ', "max_tokens": 1', args.digits))
            for mb in [float(x) for x in args.text_mb.split(",") if x]:
                text = "hello " * int(mb * 1e6 / 6)
                measure(srv.url, srv.pid, "/v1/completions", json.dumps({"prompt": text, "max_tokens": 1}).encode())
        finally:
            srv.stop()
        if not args.no_embeddings:
            srv = Server(args, model, "--is-embedding")
            try:
                for n in counts:
                    measure(srv.url, srv.pid, "/v1/embeddings", id_body("input", n, "", args.digits))
            finally:
                srv.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


main()
