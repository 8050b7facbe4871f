#!/usr/bin/python3
"""`dpserve generate` on stories260K as a user runs it: an empty --prompt / --prompt-ids is a clear error
(not a silent run from BOS alone), a prompt beyond the context is refused, no prompt at all starts from BOS
(run.c's default), --prompts-file - reads a pipe, and --json-schema / --ebnf take a file or the text itself.

usage: generate_cli.py DPSERVE_BINARY SHARED_DIR
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from check_tally import check, finish  # noqa: E402

dpserve, shared = sys.argv[1], sys.argv[2]
model = os.path.join(shared, "models", "stories260K", "stories260K.bin")


def gen(*args):
    n = [] if "-n" in args else ["-n", "8"]
    return subprocess.run([dpserve, "generate", "--model-path", model, "--threads", "1", *n, *args],
                          capture_output=True, text=True, timeout=120)


def gen_stdin(data, *args):
    return subprocess.run([dpserve, "generate", "--model-path", model, "--threads", "1", "-n", "8", *args],
                          capture_output=True, text=True, timeout=120, input=data)


def last_line(r):
    lines = r.stderr.strip().splitlines()
    return lines[-1] if lines else ""


# No prompt: BOS alone, as run.c starts.
bos_only = gen()
check("no prompt runs from BOS", bos_only.returncode == 0 and bos_only.stdout, bos_only.stderr[-500:])
# --prompt "" with the model's BOS is the prompt [BOS]: the same run.
r = gen("--prompt", "")
check("empty --prompt with BOS = BOS alone", r.returncode == 0 and r.stdout == bos_only.stdout,
      f"{r.stdout!r} vs {bos_only.stdout!r} {r.stderr[-300:]}")
# --prompt "" --no-bos has no token at all: an error naming --prompt, not a run from the BOS it was told to drop.
r = gen("--prompt", "", "--no-bos")
check("empty --prompt --no-bos refused", r.returncode == 1 and "--prompt" in last_line(r) and not r.stdout,
      f"rc={r.returncode} out={r.stdout!r} {last_line(r)}")
# --prompt-ids "" names no token: an error, not a run from BOS.
r = gen("--prompt-ids", "")
check("empty --prompt-ids refused", r.returncode == 1 and "--prompt-ids" in last_line(r) and not r.stdout,
      f"rc={r.returncode} out={r.stdout!r} {last_line(r)}")
# A prompt longer than the 512-position context: one clear line, exit 1.
r = gen("--prompt", "Once upon a time " * 300)
check("prompt beyond the context refused", r.returncode == 1 and "context" in last_line(r), last_line(r))
# --prompts-file - reads the prompts from standard input: the same outputs as from the file.
prompts = "Once upon a time\nLily and Tom\n"
piped = gen_stdin(prompts, "--prompts-file", "-")
path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"generate_cli_{os.getpid()}.txt")
with open(path, "w") as f:
    f.write(prompts)
from_file = gen("--prompts-file", path)
os.remove(path)
check("--prompts-file - reads stdin", piped.returncode == 0 and len(piped.stdout.splitlines()) == 2,
      piped.stderr[-300:])
check("stdin prompts = file prompts", piped.stdout == from_file.stdout, f"{piped.stdout!r} vs {from_file.stdout!r}")
# CRLF line ends (a file saved on Windows) are line ends, not prompt text: the same outputs.
crlf = gen_stdin(prompts.replace("\n", "\r\n"), "--prompts-file", "-")
check("CRLF prompts = LF prompts", crlf.returncode == 0 and crlf.stdout == piped.stdout,
      f"{crlf.stdout!r} vs {piped.stdout!r}")
crlf = gen_stdin("1,403\r\n1,407\r\n", "--prompts-file", "-", "--prompts-are-ids")
check("CRLF id lines", crlf.returncode == 0 and len(crlf.stdout.splitlines()) == 2, last_line(crlf))

# A prompt line with no tokens is named by its number.
r = gen_stdin("Once upon a time\n\nLily\n", "--prompts-file", "-", "--no-bos")
check("empty prompt line named", r.returncode == 1 and "line 2" in last_line(r), last_line(r))
r = gen_stdin("1,2\n,\n", "--prompts-file", "-", "--prompts-are-ids")
check("empty id line named", r.returncode == 1 and "line 2" in last_line(r), last_line(r))

# A bad id in a --prompts-are-ids file names the file's line, not --prompt-ids (which was not given).
r = gen_stdin("1,2\n1,x\n", "--prompts-file", "-", "--prompts-are-ids")
check("bad id line named", r.returncode == 1 and "--prompts-file line 2" in last_line(r), last_line(r))

# Bad values name their flag.
for args, flag in ((["-n", "0"], "--max-new-tokens"), (["--temperature", "-1"], "--temperature"),
                   (["--prompt-ids", "1,x"], "--prompt-ids"), (["--prompts-file", "/nonexistent"], "--prompts-file")):
    r = gen(*args)
    check(f"{' '.join(args)} refused", r.returncode == 1 and flag in last_line(r), f"rc={r.returncode} {last_line(r)}")

# --json-schema / --ebnf take a file or the text itself. A boolean schema admits only "true" / "false" (JSON's
# grammar); the same schema from a file gives the same greedy output; a path that does not exist is named, not
# compiled as schema text (which would fail as "invalid JSON" at best).
r = gen("--json-schema", '{"type": "boolean"}')
check("inline --json-schema", r.returncode == 0 and r.stdout.strip() in ("true", "false"), f"{r.stdout!r}")
schema_file = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"generate_cli_schema_{os.getpid()}.json")
with open(schema_file, "w") as f:
    f.write('{"type": "boolean"}')
r2 = gen("--json-schema", schema_file)
os.remove(schema_file)
check("--json-schema from a file", r2.returncode == 0 and r2.stdout == r.stdout, f"{r2.stdout!r} vs {r.stdout!r}")
for flag, path in (("--json-schema", "/nonexistent/schema.json"), ("--ebnf", "/nonexistent/g.gbnf")):
    r = gen(flag, path)
    check(f"{flag} missing file named", r.returncode == 1 and flag in last_line(r) and path in last_line(r),
          f"rc={r.returncode} {last_line(r)}")
r = gen("--ebnf", 'root ::= "yes" | "no"')
check("inline --ebnf", r.returncode == 0 and r.stdout.strip() in ("yes", "no"), f"{r.stdout!r}")

# A --max-total-tokens whose KV cache outgrows the memory available is said at start: the pool's pages are
# only backed when first written, so it would start and be killed later. stories260K's KV is 1.25 KiB per token
# (5 layers x 4 KV heads x 8 dims x fp32 x K and V), so 100000 tokens take 128 MB: past a 50 MB reading, within
# a 1 GB one (DPSERVE_TEST_MEM_AVAILABLE stands in for MemAvailable).
for avail, warned in ((50_000_000, True), (1_000_000_000, False)):
    r = subprocess.run([dpserve, "generate", "--model-path", model, "--threads", "1", "-n", "2",
                        "--max-total-tokens", "100000"], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, DPSERVE_TEST_MEM_AVAILABLE=str(avail)))
    said = "--max-total-tokens 100000 takes 0.13 GB" in r.stderr
    check(f"--max-total-tokens past {avail} bytes available: warned={warned}", r.returncode == 0 and said == warned,
          f"rc={r.returncode} {r.stderr[-600:]}")

finish()
