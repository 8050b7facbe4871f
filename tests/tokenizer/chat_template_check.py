#!/usr/bin/python3
"""Renders chat templates with Jinja2 (Debian python3-jinja2, set up as transformers'
apply_chat_template does) and with dpserve's interpreter, and requires identical bytes.

usage: chat_template_check.py RENDER_BINARY SHARED_DIR
"""
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))


def hf_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda f: datetime.now().strftime(f)
    return env


TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city, e.g. \"Paris\" — with units.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name (UTF-8: Zürich, 東京)"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "add", "description": "Add numbers",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "integer"}},
                       "required": ["a", "b"]}}},
]

CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius"}}}]}
CALL_STR_ARGS = {"role": "assistant", "content": "Let me check.", "tool_calls": [
    {"type": "function", "function": {"name": "add", "arguments": "{\"a\": 1.5, \"b\": 2}"}}]}

CONVERSATIONS = {
    "single_user": [{"role": "user", "content": "Hello!"}],
    "system_multi_turn": [
        {"role": "system", "content": "You are terse.  "},
        {"role": "user", "content": "  What is 2+2?\n"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And \"3+3\"? 'quotes' \\ backslash, 你好, مرحبا, 👍🏽"},
    ],
    "no_system_multi_turn": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": "Tell me a joke.\n\nPlease."},
    ],
    "thinking_history": [
        {"role": "user", "content": "Solve x+1=2"},
        {"role": "assistant", "content": "<think>\nSubtract 1.\n</think>\n\nx = 1"},
        {"role": "user", "content": "And x+2=5?"},
        {"role": "assistant", "content": "x = 3", "reasoning_content": "Subtract 2 from 5."},
    ],
    "tool_round_trip": [
        {"role": "system", "content": "Use tools when useful."},
        {"role": "user", "content": "Weather in Zürich? Also add 1.5 and 2."},
        CALL,
        {"role": "tool", "content": "{\"temperature\": 21, \"unit\": \"celsius\"}"},
        {"role": "assistant", "content": "It is 21 °C."},
    ],
    "tool_string_args_two_responses": [
        {"role": "user", "content": "Add 1.5 and 2"},
        CALL_STR_ARGS,
        {"role": "tool", "content": "3.5"},
        {"role": "tool", "content": "done"},
    ],
    "content_parts": [
        {"role": "user", "content": [{"type": "text", "text": "Describe"}, {"type": "image_url", "image_url": {"url": "x"}},
                                     {"type": "text", "text": "  this  "}]},
        {"role": "assistant", "content": "A cat."},
    ],
    # Image parts as dpserve hands them to templates ({"type": "image"}, as Hugging Face's processors
    # do), plus the OpenAI spelling, which Qwen2-VL's template also recognizes.
    "image_parts": [
        {"role": "system", "content": "Look closely."},
        {"role": "user", "content": [{"type": "text", "text": "Compare "}, {"type": "image"},
                                     {"type": "text", "text": " and "}, {"type": "image"}]},
        {"role": "assistant", "content": "They differ."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}, {"type": "text", "text": "?"}]},
    ],
}


def template_sources(shared):
    out = {}
    for name in ("qwen3", "llama3"):
        with open(os.path.join(shared, "tokenizers", name, "tokenizer_config.json"), encoding="utf-8") as f:
            out[name] = json.load(f)["chat_template"]
    for fn in sorted(os.listdir(os.path.join(HERE, "templates"))):
        with open(os.path.join(HERE, "templates", fn), encoding="utf-8") as f:
            out[fn.rsplit(".", 1)[0]] = f.read()
    return out


def build_cases(shared):
    cases = []
    special = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    for tname, src in template_sources(shared).items():
        for cname, msgs in CONVERSATIONS.items():
            if cname == "content_parts" and tname not in ("chatml_parts", "qwen2_vl"):
                continue
            if cname == "image_parts" and tname not in ("chatml_parts", "qwen2_vl"):
                continue
            for agp in (True, False):
                variants = [{}]
                if cname.startswith("tool"):
                    variants = [{"tools": TOOLS}, {"tools": TOOLS, "tools_in_user_message": False},
                                {"tools": TOOLS, "builtin_tools": ["brave_search", "get_weather"]}]
                if tname == "qwen3" and cname in ("single_user", "thinking_history"):
                    variants += [{"enable_thinking": False}, {"enable_thinking": True}]
                if tname == "qwen2_vl" and cname == "image_parts":
                    variants += [{"add_vision_id": True}]
                for extra in variants:
                    ctx = {"messages": msgs, "add_generation_prompt": agp, **special, **extra}
                    cases.append({"name": f"{tname}/{cname}/agp={agp}/{sorted(extra)}", "template": src, "context": ctx})
    # Templates that raise: both engines must refuse.
    two_calls = {"role": "assistant", "content": "", "tool_calls": [CALL["tool_calls"][0], CALL["tool_calls"][0]]}
    cases.append({"name": "llama3_1_tools/two_calls_raises", "template": template_sources(shared)["llama3_1_tools"],
                  "context": {"messages": [{"role": "user", "content": "x"}, two_calls], "tools": TOOLS, **special}})
    # Small constructs one by one.
    snippets = [
        "{{ [1, 2.5, 'a', none, true] }}|{{ {'k': [1, {'x': 'y'}]} }}|{{ 1e20 }}|{{ 0.1 + 0.2 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % -3 }}|{{ 2 ** 10 }}",
        "{% for k, v in d.items() %}{{ loop.index }}:{{ k }}={{ v }}{{ ',' if not loop.last }}{% endfor %}",
        "{% for x in xs if x > 1 %}{{ x }}{{ loop.length }}{% else %}empty{% endfor %}|{% for x in [] %}{% else %}E{% endfor %}",
        "{% set ns = namespace(total=0) %}{% for x in xs %}{% set ns.total = ns.total + x %}{% set local = x %}{% endfor %}{{ ns.total }}{{ local is defined }}",
        "{{ 'a,b,,c'.split(',') }}{{ '  x y  '.split() }}{{ 'abc'[::-1] }}{{ xs[1:] }}{{ xs[-1] }}{{ 'héllo'[1:3] }}",
        "{{ '  pad  ' | trim }}|{{ 'Hello World' | lower }}|{{ 'x' | upper }}|{{ xs | length }}|{{ 'héllo' | length }}|{{ xs | join('-') }}",
        "{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ 'q\"\\n' | tojson }}|{{ xs | tojson(separators=(',', ':')) }}",
        "{{ undefined_thing }}|{{ undefined_thing is defined }}|{{ none is none }}|{{ 3 is odd }}|{{ 'a' is string }}|{{ d is mapping }}",
        "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bob') }} {{ greet('Al', punct='?') }}",
        # Namespaces holding themselves or each other (cycles the interpreter must free: the ASan run
        # reports a leak otherwise).
        "{% set a = namespace(n=1) %}{% set b = namespace(a=a) %}{% set a.b = b %}{% set a.me = a %}{% set a.l = [a, {'b': b}] %}"
        "{{ a.me.b.a.n }}{{ a.l | length }}{% for x in xs %}{% set c = namespace(i=x) %}{% set c.self = c %}{{ c.self.self.i }}{% endfor %}",
        "{% for x in xs %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 3 %}{% break %}{% endif %}{{ x }}{% endfor %}",
        "{%- set s -%}\n  captured {{ xs[0] }}\n{%- endset %}[{{ s }}]",
        "  {% if true %}\n    indented\n  {% endif %}\n{# comment #}\nend\n",
        "{{ 'x' ~ 1 ~ none }}|{{ 'a' in 'cat' }}|{{ 2 in xs }}|{{ 'k' in d }}|{{ 1 < 2 < 3 }}|{{ not false and (true or false) }}",
        "{{ xs | map('string') | join }}|{{ ms | map(attribute='role') | list }}|{{ ms | selectattr('role', 'equalto', 'user') | list | length }}",
        "{{ 'Hello'.startswith('He') }}{{ 'Hello'.endswith(('x', 'lo')) }}{{ 'a-b'.replace('-', '+') }}{{ 'ab'.upper() }}{{ ' \\n x \\n'.strip() }}",
        "{{ d.get('k') }}{{ d.get('zz', 'dflt') }}{{ d['k'] }}{{ d.k }}{{ xs.0 }}{{ range(3) | list }}{{ range(1, 10, 3) | list }}",
        "{{ x | default('D') }}{{ '' | default('E', true) }}{{ xs | first }}{{ xs | last }}{{ xs | reverse | list }}{{ [3, 1, 2] | sort }}",
        "{{ 'abc' if xs else 'none' }}{{ 'yes' if false }}|{{ (1, 2) }}|{{ 'x' * 3 }}|{{ 10 / 4 }}|{{ 1.0 }}|{{ -0.5 | abs }}",
        "{{ raise_exception('boom') }}",
        "{{ d.nope.deeper }}",
        "{{ d.items() | list }}{{ (1,) }}{{ d | items | list }}",
        "{{ xs | tojson }}{{ 'line1\\nline2' | indent(2) }}|{{ 'Ünïcode' | capitalize }}|{{ 1 == 1.0 }}",
        # Python's round halves to even; Python's line boundaries include U+0085, U+2028, U+2029.
        "{{ 2.5 | round }}|{{ -2.5 | round }}|{{ 0.5 | round }}|{{ 1.5 | round }}|{{ 3.14159 | round(2) }}|"
        "{{ 2.1 | round(method='ceil') }}|{{ 2.9 | round(0, 'floor') }}",
        "{{ lines.splitlines() }}",
        # Case by Python's Unicode rules: full mappings (ß, ligatures, iota subscript), final sigma,
        # title case (ǅ, Georgian), cased letters only (digits are not).
        "{{ intl | upper }}|{{ intl | lower }}|{{ intl | title }}|{{ intl | capitalize }}|"
        "{{ intl.upper() }}|{{ intl.lower() }}|{{ intl.title() }}|{{ intl.capitalize() }}",
    ]
    sctx = {"xs": [1, 2, 3], "d": {"k": "v", "n": 1.5, "l": [True, None]}, "ms": CONVERSATIONS["system_multi_turn"],
            "lines": "x\u2028y\x85z\r\nw\x0bv\x1cu\u2029t\n",
            "intl": "Ärger über die Straße, élan ÉCOLE Σίσυφος ΟΔΟΣ ǆungla ﬁne İstanbul ᾳ 1st ალი Привет ΣΑΣ.",
            **special}
    for i, s in enumerate(snippets):
        cases.append({"name": f"snippet{i}", "template": s, "context": sctx})
    return cases


def main():
    render_bin, shared = sys.argv[1], sys.argv[2]
    if not os.path.isdir(shared):
        print(f"missing shared data {shared}")
        return 1
    env = hf_env()
    cases = build_cases(shared)
    expected = []
    for c in cases:
        try:
            expected.append({"ok": env.from_string(c["template"]).render(**c["context"])})
        except Exception as e:  # template errors and undefined access
            expected.append({"error": f"{type(e).__name__}: {e}"})
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump([{"template": c["template"], "context": c["context"]} for c in cases], f, ensure_ascii=False)
        path = f.name
    try:
        res = subprocess.run([render_bin, path], capture_output=True, timeout=120)
    finally:
        os.unlink(path)
    if res.returncode != 0:
        print(res.stderr.decode(errors="replace"))
        return 1
    got = json.loads(res.stdout.decode("utf-8"))
    passed = failed = 0
    for c, want, have in zip(cases, expected, got):
        if "ok" in want and have.get("ok") == want["ok"]:
            passed += 1
        elif "error" in want and "error" in have:
            passed += 1
        else:
            failed += 1
            print(f"MISMATCH {c['name']}\n  jinja2: {json.dumps(want, ensure_ascii=False)[:3000]}\n  dpserve: {json.dumps(have, ensure_ascii=False)[:3000]}")
    if len(got) != len(cases):
        failed += 1
        print("renderer returned a different number of results")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 100 else 1


if __name__ == "__main__":
    sys.exit(main())
