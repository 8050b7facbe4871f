"""What the e2e checks judged by the NumPy reference share: the echo model run_e2e.sh serves (ECHO_MODEL,
DPSERVE_URL), its reference forward (tests/model/reference/ref_forward.py), the ids the server can report,
and a JSON POST that returns the status and body of errors too.
"""
import json
import os
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model", "reference"))
import ref_forward as rf  # noqa: E402

URL = os.environ["DPSERVE_URL"]
MODEL = os.environ["ECHO_MODEL"]
TOL = 2e-3  # f32 engine vs float64 reference (as echo_logprobs.py)
# The ids the server can report: the tokenizer's (a model vocabulary padded past it gives those rows no
# probability, and the reference's softmax runs over the same ids), as echo_logprobs.py.
with open(os.path.join(MODEL, "tokenizer.json")) as f:
    _tok = json.load(f)
VOCAB = max(list(_tok["model"]["vocab"].values()) + [t["id"] for t in _tok.get("added_tokens", [])]) + 1
ref = rf.RefModel(MODEL)


def post(path, body):
    req = urllib.request.Request(URL + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())
