"""The chat prompt the server builds, against Jinja2 (run by run_e2e.sh: DPSERVE_URL; argv: the
server's tokenizer folder, whose tokenizer_config.json holds BOS, EOS and the template, and the
server's --chat-template file when it has one).

For each conversation (tools, tool calls with object arguments and with arguments as JSON text, which
reach the template as objects, a developer message, extra template variables), POST /tokenize with `messages` (vLLM's chat form) must give the ids of the text Jinja2
renders from the same template and context, set up as transformers' apply_chat_template does (the
tokenizer itself is checked against Hugging Face elsewhere). /v1/chat/completions must count the
same prompt. Key order matters: `tojson` prints objects in the client's order in Python, so a server
that sorted keys renders a tool schema differently from every Hugging Face-based one.

continue_final_message (vLLM's and SGLang's field): the reference renders without a generation prompt and
cuts the text after the final message as transformers' apply_chat_template does (cut_after_final below,
written from its documented rule); both engines must agree on that prompt, on /tokenize and in chat
completions' usage.
"""
import http.client
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tokenizer"))
from chat_template_check import CONVERSATIONS, TOOLS, hf_env  # noqa: E402

host, port = os.environ["DPSERVE_URL"].rsplit("//", 1)[1].split(":")
failures = []
# The server runs a reasoning parser (REASONING=1): "none" must then turn thinking off.
REASONING = os.environ.get("REASONING") == "1"


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def post(path, body):
    c = http.client.HTTPConnection(host, int(port), timeout=120)
    c.request("POST", path, body=json.dumps(body, ensure_ascii=False).encode(),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    raw = r.read().decode()
    c.close()
    return r.status, json.loads(raw)


def special(value):
    return value.get("content", "") if isinstance(value, dict) else (value or "")


with open(os.path.join(sys.argv[1], "tokenizer_config.json"), encoding="utf-8") as f:
    cfg = json.load(f)
template, bos, eos = cfg["chat_template"], special(cfg.get("bos_token")), special(cfg.get("eos_token"))
if len(sys.argv) > 2:  # the server's --chat-template
    with open(sys.argv[2], encoding="utf-8") as f:
        template = f.read()
env = hf_env()

# Keys deliberately out of alphabetical order, at every level.
ZA_TOOLS = [{"type": "function", "function": {
    "name": "search", "description": "Find things",
    "parameters": {"type": "object", "properties": {"zeta": {"type": "string"}, "alpha": {"type": "integer"}},
                   "required": ["zeta"]}}}] + TOOLS
ZA_CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"type": "function", "function": {"name": "search", "arguments": {"zeta": "q", "alpha": 2}}}]}

def cut_after_final(rendered, message):
    """transformers' continue_final_message: the final message's last occurrence, stripped; its trailing
    whitespace kept when the template kept it."""
    if isinstance(message, list):
        message = next(p["text"] for p in reversed(message) if "text" in p)
    if message.strip() not in rendered:
        raise ValueError("the final message is not in the rendered chat")
    at = rendered.rindex(message.strip())
    if rendered[at:at + len(message.lstrip())] == message:
        return rendered[:at + len(message.lstrip())]
    return rendered[:at + len(message.strip())]


cases = []
for name, msgs in CONVERSATIONS.items():
    if name in ("content_parts", "image_parts"):
        continue  # image parts need a vision model
    cases.append((name, {"messages": msgs}))
    if name.startswith("tool"):
        cases.append((name + "/tools", {"messages": msgs, "tools": ZA_TOOLS}))
cases += [
    ("za_call", {"messages": [{"role": "user", "content": "find q"}, ZA_CALL,
                              {"role": "tool", "content": "nothing"}], "tools": ZA_TOOLS}),
    ("developer", {"messages": [{"role": "developer", "content": "Answer in French."},
                                {"role": "user", "content": "hi"}]}),
    ("kwargs_no_generation_prompt", {"messages": [{"role": "user", "content": "hi"}],
                                     "chat_template_kwargs": {"add_generation_prompt": False}}),
    ("field_no_generation_prompt", {"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": False}),
    ("kwargs_no_thinking", {"messages": [{"role": "user", "content": "hi"}],
                            "chat_template_kwargs": {"enable_thinking": False}}),
    # OpenAI's reasoning_effort, as vLLM passes it: the template's reasoning_effort, and enable_thinking
    # false for "none", true for a level.
    ("effort_none", {"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "none"}),
    ("effort_high", {"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "high"}),
    ("effort_none_kwargs_agree", {"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "none",
                                  "chat_template_kwargs": {"enable_thinking": False}}),
    ("effort_low_kwargs_agree", {"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "low",
                                 "chat_template_kwargs": {"enable_thinking": True}}),
    # continue_final_message: vLLM's form (with add_generation_prompt false), SGLang's (alone), trailing
    # whitespace a template may strip, a content list, and a final user message.
    ("continue_final", {"messages": [{"role": "user", "content": "Write a haiku"},
                                     {"role": "assistant", "content": "Autumn moon,"}],
                        "continue_final_message": True, "add_generation_prompt": False}),
    ("continue_final_alone", {"messages": [{"role": "user", "content": "Name a colour"},
                                           {"role": "assistant", "content": "The colour is"}],
                              "continue_final_message": True}),
    ("continue_final_trailing_space", {"messages": [{"role": "user", "content": "Count"},
                                                    {"role": "assistant", "content": "One, two, \n"}],
                                       "continue_final_message": True}),
    ("continue_final_parts", {"messages": [{"role": "user", "content": "Say hi"},
                                           {"role": "assistant", "content": [{"type": "text", "text": "Hi "},
                                                                             {"type": "text", "text": "there"}]}],
                              "continue_final_message": True}),
    ("continue_final_user", {"messages": [{"role": "user", "content": "Complete: the sky is"}],
                             "continue_final_message": True}),
]

for name, body in cases:
    # The reference context: developer messages are system messages to a template (the server's
    # documented mapping), and add_generation_prompt defaults to true.
    msgs = [dict(m, role="system") if m["role"] == "developer" else m for m in body["messages"]]
    # A call's arguments as the object when the client sent them as JSON text (as vLLM's and SGLang's chat
    # routes hand them to templates: transformers' templates expect objects).
    msgs = [dict(m, tool_calls=[dict(c, function=dict(c["function"], arguments=json.loads(c["function"]["arguments"])))
                                if isinstance(c["function"].get("arguments"), str)
                                and isinstance(json.loads(c["function"]["arguments"]), dict) else c
                                for c in m["tool_calls"]]) if m.get("tool_calls") else m for m in msgs]
    # Text-only content lists reach the template joined into one string (the server's documented mapping).
    msgs = [dict(m, content="".join(p["text"] for p in m["content"])) if isinstance(m.get("content"), list)
            and all(p.get("type") == "text" for p in m["content"]) else m for m in msgs]
    ctx = {"messages": msgs, "bos_token": bos, "eos_token": eos, "add_generation_prompt": True}
    if "tools" in body:
        ctx["tools"] = body["tools"]
    ctx.update(body.get("chat_template_kwargs", {}))
    if "add_generation_prompt" in body:
        ctx["add_generation_prompt"] = body["add_generation_prompt"]
    if body.get("continue_final_message"):
        ctx["add_generation_prompt"] = False
    effort = body.get("reasoning_effort")
    if effort is not None:
        # (chat_template_kwargs may set the same variables, agreeing.)
        added = {"reasoning_effort": effort, "enable_thinking": effort != "none"}
        base = {k: v for k, v in ctx.items() if k not in added}
        # A level the template does not read would change nothing: the server refuses it ("none" also
        # holds for a model without a reasoning parser, which does not think in parsed blocks).
        same = env.from_string(template).render(**base) == env.from_string(template).render(**base, **added)
        if same and (effort != "none" or REASONING):
            for path in ("/tokenize", "/v1/chat/completions"):
                status, e = post(path, {**body, "max_tokens": 1} if path != "/tokenize" else body)
                check(status == 400 and e["error"]["param"] == "reasoning_effort",
                      f"{name}: the template ignores it: {path} {status} naming {e.get('error', {}).get('param')}")
            continue
        ctx.update(added)
    try:
        text = env.from_string(template).render(**ctx)
        if body.get("continue_final_message"):
            text = cut_after_final(text, msgs[-1]["content"])
    except Exception as e:  # the template refuses this conversation: the server must too
        status, _ = post("/tokenize", body)
        check(status == 400, f"{name}: Jinja2 raises ({type(e).__name__}), the server answers {status}")
        continue
    status, want = post("/tokenize", {"prompt": text, "add_special_tokens": False})
    check(status == 200, f"{name}: /tokenize of Jinja2's text: {status}")
    status, got = post("/tokenize", body)
    check(status == 200 and got["tokens"] == want["tokens"],
          f"{name}: /tokenize messages = Jinja2's prompt ({len(want['tokens'])} ids)"
          + ("" if status != 200 or got["tokens"] == want["tokens"] else
             f"; first difference at {next(i for i, (a, b) in enumerate(zip(got['tokens'] + [-1], want['tokens'] + [-1])) if a != b)}"))
    if name in ("za_call", "developer", "tool_round_trip/tools", "continue_final", "continue_final_alone"):
        chat = {k: v for k, v in body.items() if k != "add_generation_prompt"}
        status, r = post("/v1/chat/completions", {**chat, "max_tokens": 1, "temperature": 0})
        check(status == 200 and r["usage"]["prompt_tokens"] == len(want["tokens"]),
              f"{name}: chat completions counts the same prompt ({status}, "
              f"{r.get('usage', {}).get('prompt_tokens')} vs {len(want['tokens'])})")

status, e = post("/tokenize", {"prompt": "x", "messages": [{"role": "user", "content": "x"}]})
check(status == 400 and e["error"]["param"] == "prompt", f"prompt with messages: {status} naming prompt")
status, e = post("/tokenize", {"prompt": "x", "tools": ZA_TOOLS})
check(status == 400 and e["error"]["param"] == "tools", f"tools without messages: {status} naming tools")
two = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
for path in ("/tokenize", "/v1/chat/completions"):
    for extra, what in (({"continue_final_message": True, "add_generation_prompt": True}, "with add_generation_prompt"),
                        ({"continue_final_message": "yes"}, "not a boolean")):
        status, e = post(path, {"messages": two, "max_tokens": 1, **extra} if path != "/tokenize"
                         else {"messages": two, **extra})
        check(status == 400 and e["error"]["param"] == "continue_final_message",
              f"{path}: continue_final_message {what}: {status} naming it ({e.get('error', {}).get('param')})")
for bad in ("max", 2, ""):
    status, e = post("/v1/chat/completions", {"messages": two, "max_tokens": 1, "reasoning_effort": bad})
    check(status == 400 and e["error"]["param"] == "reasoning_effort", f"reasoning_effort {bad!r}: {status} naming it")
status, e = post("/v1/chat/completions", {"messages": two, "max_tokens": 1, "reasoning_effort": "none",
                                          "chat_template_kwargs": {"enable_thinking": True}})
check(status == 400 and e["error"]["param"] == "reasoning_effort", f"reasoning_effort contradicting kwargs: {status}")
status, e = post("/tokenize", {"prompt": "x", "reasoning_effort": "none"})
check(status == 400 and e["error"]["param"] == "reasoning_effort", f"reasoning_effort without messages: {status}")
status, e = post("/tokenize", {"prompt": "x", "continue_final_message": True})
check(status == 400 and e["error"]["param"] == "continue_final_message",
      f"continue_final_message without messages: {status} naming it")

print(f"{len(cases)} conversations, {len(failures)} failures")
sys.exit(1 if failures else 0)
