"""JSON Schemas as Pydantic writes them (Model.schema() in 1.x, Debian 12's python3-pydantic;
Model.model_json_schema() in 2.x), compiled by constrain_sample: every drawn output must parse as
the model (Pydantic validates it) and validate under jsonschema when it is installed. Strings
outside the language: outputs are mutated (a character deleted, replaced or inserted) and every
mutant the automaton accepts must parse as the model too.

    python3 pydantic_corpus.py <constrain_sample>
"""
import enum
import json
import os
import random
import subprocess
import sys
import time
from datetime import date, datetime
from typing import Dict, List, Literal, Optional, Union

import pydantic
from pydantic import BaseModel, conint, confloat, constr

V2 = pydantic.VERSION.startswith("2")
try:
    import jsonschema
except ImportError:
    jsonschema = None


def pattern_str(p):
    return constr(pattern=p) if V2 else constr(regex=p)


class Color(str, enum.Enum):
    red = "red"
    blue = "blue"


class Address(BaseModel):
    street: constr(min_length=1, max_length=30)
    zip: pattern_str(r"^[0-9]{5}$")


class Pet(BaseModel):
    kind: Literal["cat", "dog"]
    age: conint(ge=0, le=30)


class Person(BaseModel):
    name: constr(min_length=1, max_length=20)
    nick: Optional[str] = None
    tags: List[str]
    scores: Dict[str, int]
    color: Color
    when: datetime
    day: date
    address: Address
    pets: List[Pet]
    ident: Union[int, str]
    ratio: confloat(gt=0, lt=1)
    code: pattern_str(r"^[A-Z]{2}-[0-9]{3}$")


class Tree(BaseModel):
    label: str
    children: List["Tree"] = []


if V2:
    Tree.model_rebuild()
else:
    Tree.update_forward_refs()


class Flags(BaseModel):
    on: bool
    level: conint(gt=-5, lt=5)
    maybe: Optional[Color] = None
    kinds: List[Literal["a", "b"]]


MODELS = [Person, Tree, Flags, Address, Pet]


def schema_of(m):
    return m.model_json_schema() if V2 else m.schema()


def parses(m, text):
    try:
        if V2:
            m.model_validate_json(text)
        else:
            m.parse_raw(text)
    except Exception:  # pydantic.ValidationError, json errors
        return False
    if jsonschema is not None:
        try:
            jsonschema.validate(json.loads(text), schema_of(m), format_checker=jsonschema.FormatChecker())
        except jsonschema.ValidationError:
            return False
    return True


def run(sampler, lines):
    out = subprocess.run([sampler], input="".join(json.dumps(l) + "\n" for l in lines), capture_output=True,
                         text=True, timeout=100, check=True).stdout
    return {r["id"]: r for r in map(json.loads, out.strip().split("\n"))}


def main():
    sampler = sys.argv[1]
    seed = int(os.environ.get("CONSTRAIN_SEED", time.time_ns() % 1000000007))
    print(f"seed {seed} (CONSTRAIN_SEED={seed} reproduces this run), pydantic {pydantic.VERSION}")
    rng = random.Random(seed)
    schemas = [json.dumps(schema_of(m)) for m in MODELS]
    res = run(sampler, [{"id": i, "kind": "json_schema", "text": s, "n": 6, "seed": seed + i, "soft": 200}
                        for i, s in enumerate(schemas)])
    failures = outputs = accepted_mutants = 0

    def fail(msg):
        nonlocal failures
        failures += 1
        if failures <= 20:
            print("FAIL", msg)

    checks = []
    for i, m in enumerate(MODELS):
        r = res[i]
        if "error" in r:
            fail(f"{m.__name__}: refused: {r['error']}\n  schema {schemas[i]}")
            continue
        if not r["outputs"]:
            fail(f"{m.__name__}: no output drawn")
        mutants = set()
        for o in r["outputs"]:
            outputs += 1
            if not parses(m, o):
                fail(f"{m.__name__}: {o!r} does not parse as the model")
            for _ in range(60):
                at, c, kind = rng.randrange(len(o) + 1), rng.choice('aZ09-_:." {},[]\\T'), rng.randrange(3)
                mutants.add(o[:at] + o[at + 1:] if kind == 0 else o[:at] + c + o[at + 1:] if kind == 1 else o[:at] + c + o[at:])
        checks.append((i, m, sorted(mutants)))
    checked = run(sampler, [{"id": i, "kind": "json_schema", "text": schemas[i], "check": ms} for i, _, ms in checks])
    n_mutants = 0
    for i, m, ms in checks:
        for s, ok in zip(ms, checked[i]["accepted"]):
            n_mutants += 1
            if ok:
                accepted_mutants += 1
                if not parses(m, s):
                    fail(f"{m.__name__}: the automaton accepts {s!r}, which does not parse as the model")
    print(f"{len(MODELS)} models, {outputs} outputs, {n_mutants} mutants ({accepted_mutants} accepted, each valid), "
          f"{failures} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
