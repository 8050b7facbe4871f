"""Values that used to be read loosely (issue 36), sent as raw JSON bodies over a real socket to a
running server (run by run_e2e.sh: DPSERVE_URL): each is a 400 naming its parameter, and the
nearest valid value still works.
  * `seed` below -2^63 (the literal became the double -2^63 and was accepted as it);
  * `logit_bias` keys that are not plain decimal token ids (" 5", "05", "+5", "5.0", "-0", "");
  * duplicate keys in an object (logit_bias, sampling_params.logit_bias, the top level): RFC 8259
    leaves their meaning open, and the last one silently won.
"""
import http.client
import json
import os
import sys

host, port = os.environ["DPSERVE_URL"].rsplit("//", 1)[1].split(":")
failures = []


def post(path, raw):
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    c.request("POST", path, body=raw.encode(), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    try:
        return r.status, json.loads(body)
    except ValueError:
        return r.status, body


def expect(path, raw, status, param=None, code=None):
    got, body = post(path, raw)
    err = body.get("error", {}) if isinstance(body, dict) else {}
    ok = got == status and (param is None or err.get("param") == param) and (code is None or err.get("code") == code)
    if status >= 400:
        ok = ok and isinstance(err.get("message"), str) and err.get("type") == "invalid_request_error"
    print(("ok   " if ok else "FAIL ") + f"{path} {raw[:90]} -> {got} {err.get('param')!r} {err.get('code')!r} "
          f"{err.get('message', '')[:100]!r}")
    if not ok:
        failures.append(raw)


C = '"prompt": "Once upon", "max_tokens": 2, "temperature": 0'
for seed in ["-9223372036854775809", "-9223372036854775809.0", "-1e19", "9223372036854775808", "1e300",
             "18446744073709551616"]:
    expect("/v1/completions", "{%s, \"seed\": %s}" % (C, seed), 400, "seed")
for seed in ["-9223372036854775808", "9223372036854775807", "0", "-1", "1e3"]:
    expect("/v1/completions", "{%s, \"seed\": %s}" % (C, seed), 200)
expect("/generate", '{"text": "Once", "sampling_params": {"max_new_tokens": 2, "seed": -9223372036854775809}}', 400,
       "seed")

for key in [" 5", "5 ", "05", "+5", "5.0", "-0", "", "0x5", "5e0", "00", "\u0665"]:
    expect("/v1/completions", '{%s, "logit_bias": {%s: 10}}' % (C, json.dumps(key)), 400, "logit_bias")
for body in ['{"5": 10}', '{"0": -100, "10": 100}']:
    expect("/v1/completions", '{%s, "logit_bias": %s}' % (C, body), 200)

expect("/v1/completions", '{%s, "logit_bias": {"5": 100, "5": -100}}' % C, 400, "logit_bias", "duplicate_key")
expect("/v1/chat/completions", '{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, '
       '"logit_bias": {"7": 1, "8": 2, "7": 3}}', 400, "logit_bias", "duplicate_key")
expect("/generate", '{"text": "Once", "sampling_params": {"max_new_tokens": 2, "logit_bias": {"5": 1, "5": 1}}}', 400,
       "sampling_params.logit_bias", "duplicate_key")
expect("/v1/completions", '{%s, "max_tokens": 3}' % C, 400, "max_tokens", "duplicate_key")
expect("/v1/completions", '{%s, "stop": ["a"], "stream_options": null, "stop": ["b"]}' % C, 400, "stop", "duplicate_key")
# The same key in different objects is not a duplicate.
expect("/v1/completions", '{%s, "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": '
       '{"type": "object", "properties": {"type": {"type": "string"}}}}}}' % C, 200)

print(f"{len(failures)} failure(s)" if failures else "all strict value checks passed")
sys.exit(1 if failures else 0)
