r"""A strict reader of the Prometheus text exposition format 0.0.4, written from the format's own
documentation (prometheus.io/docs/instrumenting/exposition_formats), not from the server's code, so the
server's mistakes are not copied into the check: names, HELP / TYPE once per family and before its
samples, one group of lines per family, label escapes (\\ \" \n only), values as Go parses them with
NaN / +Inf / -Inf spelled so, no duplicate series, counters named *_total and never negative,
histograms with cumulative `le` buckets ending in +Inf equal to _count, and a _sum.

  parse(text) -> (families, errors); families: name -> {type, help, samples: [(name, labels, value)]}
  value(families, name, **labels) -> the sum of the matching samples
"""
import math
import re

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
# Go's strconv.ParseFloat accepts more (hex, "inf", "nan" in any case), but the format names NaN, +Inf and
# -Inf as the spellings of the special values; a plain decimal or exponent form for the rest.
FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z")


def parse_float(s):
    if s in ("NaN", "+Inf", "-Inf", "Inf"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    if not FLOAT.match(s):
        raise ValueError(s)
    return float(s)


def parse_labels(s, i, err):
    """s[i] == '{'; returns (labels, index after '}')."""
    labels = {}
    i += 1
    while True:
        while i < len(s) and s[i] in " \t":
            i += 1
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        m = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").match(s, i)
        if not m:
            raise ValueError("bad label name at %r" % s[i:i + 20])
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ValueError("expected =\" after label %s" % name)
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise ValueError("unterminated label value")
            c = s[i]
            if c == "\\":
                nxt = s[i + 1:i + 2]
                if nxt == "\\":
                    val.append("\\")
                elif nxt == '"':
                    val.append('"')
                elif nxt == "n":
                    val.append("\n")
                else:
                    raise ValueError("bad escape \\%s in label value" % nxt)
                i += 2
                continue
            if c == '"':
                i += 1
                break
            val.append(c)
            i += 1
        if name in labels:
            err("duplicate label %s" % name)
        if name.startswith("__"):
            err("reserved label name %s" % name)
        labels[name] = "".join(val)
        if i < len(s) and s[i] == ",":
            i += 1
            continue
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        raise ValueError("expected , or } in labels at %r" % s[i:i + 20])


def family_of(name, families):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            if base in families and families[base]["type"] in ("histogram", "summary"):
                return base
    return name


def parse(text):
    errors = []
    families = {}
    closed = set()  # families whose group of lines has ended
    current = None
    if text and not text.endswith("\n"):
        errors.append("the last line does not end with \\n")
    seen_series = set()
    for lineno, line in enumerate(text.split("\n"), 1):
        def err(msg):
            errors.append("line %d: %s: %r" % (lineno, msg, line[:160]))
        if line.strip() == "":
            continue
        if "\r" in line:
            err("carriage return")
        s = line.strip(" \t")
        if s.startswith("#"):
            toks = s[1:].strip(" \t").split(None, 2)
            if not toks or toks[0] not in ("HELP", "TYPE"):
                continue  # a plain comment
            if len(toks) < 2:
                err("%s without a metric name" % toks[0])
                continue
            name = toks[1]
            if not METRIC_NAME.match(name):
                err("illegal metric name")
            fam = families.setdefault(name, {"type": None, "help": None, "samples": []})
            if name in closed or (current is not None and current != name and fam["samples"]):
                err("metadata for %s outside its group" % name)
            if current != name and current is not None:
                closed.add(current)
            current = name
            if toks[0] == "HELP":
                if fam["help"] is not None:
                    err("second HELP for %s" % name)
                doc = toks[2] if len(toks) > 2 else ""
                if re.search(r"\\[^\\n]|\\\Z", doc):
                    err("HELP escapes only \\\\ and \\n")
                fam["help"] = doc
            else:
                if fam["type"] is not None:
                    err("second TYPE for %s" % name)
                if fam["samples"]:
                    err("TYPE after samples of %s" % name)
                t = toks[2].strip() if len(toks) > 2 else ""
                if t not in TYPES:
                    err("unknown type %r" % t)
                fam["type"] = t
            continue
        m = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*").match(s)
        if not m:
            err("no metric name")
            continue
        name = m.group(0)
        i = m.end()
        labels = {}
        try:
            if i < len(s) and s[i] == "{":
                labels, i = parse_labels(s, i, err)
            rest = s[i:]
            if not rest or rest[0] not in " \t":
                raise ValueError("no blank before the value")
            parts = rest.split()
            if len(parts) not in (1, 2):
                raise ValueError("want value [timestamp]")
            value = parse_float(parts[0])
            if len(parts) == 2 and not re.match(r"-?\d+\Z", parts[1]):
                raise ValueError("bad timestamp")
        except ValueError as e:
            err(str(e))
            continue
        fname = family_of(name, families)
        fam = families.setdefault(fname, {"type": None, "help": None, "samples": []})
        if fname != current:
            if fname in closed or fam["samples"]:
                err("sample of %s outside its family's group" % fname)
            if current is not None:
                closed.add(current)
            current = fname
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            err("duplicate series")
        seen_series.add(key)
        fam["samples"].append((name, labels, value))
    for fname, fam in families.items():
        t = fam["type"] or "untyped"
        if fam["type"] is None:
            errors.append("%s: no TYPE" % fname)
        if fam["help"] is None:
            errors.append("%s: no HELP" % fname)
        if t == "counter":
            if not fname.endswith("_total"):
                errors.append("%s: counter name does not end in _total" % fname)
            for n, l, v in fam["samples"]:
                if n != fname:
                    errors.append("%s: counter sample named %s" % (fname, n))
                if v < 0 or math.isnan(v):
                    errors.append("%s: counter value %r" % (fname, v))
        if t in ("counter", "gauge"):
            for n, l, v in fam["samples"]:
                if n != fname:
                    errors.append("%s: %s sample named %s" % (fname, t, n))
        if t == "histogram":
            check_histogram(fname, fam["samples"], errors)
    return families, errors


def check_histogram(fname, samples, errors):
    groups = {}
    for n, l, v in samples:
        if n == fname + "_bucket":
            if "le" not in l:
                errors.append("%s_bucket without le" % fname)
                continue
            rest = tuple(sorted((k, x) for k, x in l.items() if k != "le"))
            try:
                le = parse_float(l["le"])
            except ValueError:
                errors.append("%s: le=%r is not a float" % (fname, l["le"]))
                continue
            groups.setdefault(rest, {"b": [], "sum": None, "count": None})["b"].append((le, v))
        elif n in (fname + "_sum", fname + "_count"):
            if "le" in l:
                errors.append("%s with le" % n)
            rest = tuple(sorted(l.items()))
            groups.setdefault(rest, {"b": [], "sum": None, "count": None})[n.rsplit("_", 1)[1]] = v
        else:
            errors.append("%s: sample %s in a histogram" % (fname, n))
    for rest, g in groups.items():
        where = "%s%s" % (fname, dict(rest))
        b = g["b"]
        if not b:
            errors.append(where + ": no buckets")
            continue
        les = [le for le, _ in b]
        if les != sorted(les) or len(set(les)) != len(les):
            errors.append(where + ": le not strictly increasing")
        if not math.isinf(les[-1]) or les[-1] < 0:
            errors.append(where + ": last bucket is not le=+Inf")
        vals = [v for _, v in b]
        if any(y < x for x, y in zip(vals, vals[1:])):
            errors.append(where + ": buckets not cumulative")
        if g["count"] is None:
            errors.append(where + ": no _count")
        elif vals[-1] != g["count"]:
            errors.append(where + ": +Inf bucket %r != _count %r" % (vals[-1], g["count"]))
        if g["sum"] is None:
            errors.append(where + ": no _sum")


def value(families, name, **labels):
    """The sum of the samples named `name` whose labels include `labels`."""
    fam = families.get(family_of(name, families), {"samples": []})
    return sum(v for n, l, v in fam["samples"] if n == name and all(l.get(k) == x for k, x in labels.items()))
