#!/usr/bin/env python3
"""Reference exporter for the logmetrics benchmark: the same mapping as `tollgate logmetrics`,
written the obvious way with prometheus_client. Reads JSON lines from stdin until EOF, then prints
the final exposition to stdout and a summary to stderr.

    logmetrics_reference.py [--status-field status] [--model-field model] [--route-field F]
        [--user-field F] [--duration-field duration_ms] [--duration-unit ms|s]
        [--code-label code|class] [--buckets 0.05,...] [--allow LABEL=a,b] [--max-values N|LABEL=N]
        [--overflow-value __other__] [--max-series 5000] [--max-line-bytes 65536]
        [--max-label-bytes 128] [--prefix logmetrics]
        [--pod P] [--pod-template-hash H] [--listen 127.0.0.1:0]

Rules (kept identical to crates/logmetrics): status is required, an integer 100..599 as a number or
numeric string; label fields are strings (numbers and booleans as text), absent or null ->
"__missing__", objects/arrays -> malformed wrong_type; duration absent or null -> counted without
a duration, otherwise a non-negative number or numeric string. Label values longer than
--max-label-bytes, beyond an allow-list or beyond a per-label cap of distinct values become the
overflow value (a logged value equal to a sentinel joins the sentinel's series); past --max-series label
combinations, a new one keeps its code and takes the overflow value for every other label. The
histogram carries model and route only.
"""
import argparse
import json
import math
import sys
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, start_http_server

LABELS = ["code", "model", "route", "user"]
REASONS = ["empty", "not_json", "not_object", "missing_status", "wrong_type", "too_long"]
MISSING = "__missing__"


class Malformed(Exception):
    def __init__(self, reason):
        self.reason = reason


class Dim:
    def __init__(self, allow, cap, overflow, max_bytes):
        self.allow, self.cap, self.overflow, self.max_bytes = allow, cap, overflow, max_bytes
        self.seen = set()
        self.overflowed = 0

    def value(self, v):
        if v is None or v == MISSING:
            return MISSING
        if v == self.overflow:
            return v
        if len(v.encode()) > self.max_bytes:
            self.overflowed += 1
            return self.overflow
        if v in self.seen:
            return v
        if (self.allow is not None and v not in self.allow) or len(self.seen) >= self.cap:
            self.overflowed += 1
            return self.overflow
        self.seen.add(v)
        return v


def lookup(obj, path):
    for seg in path:
        if not isinstance(obj, dict) or seg not in obj:
            return None
        obj = obj[seg]
    return obj


def status_code(v):
    if isinstance(v, bool):
        raise Malformed("wrong_type")
    if isinstance(v, int):
        n = v
    elif isinstance(v, float) and v.is_integer() and 0 <= v < 1000:
        n = int(v)
    elif isinstance(v, str):
        s = v.strip()
        if not s.isdigit():
            raise Malformed("wrong_type")
        n = int(s)
    else:
        raise Malformed("wrong_type")
    if not 100 <= n <= 599:
        raise Malformed("wrong_type")
    return n


def seconds(v, scale):
    if isinstance(v, bool):
        raise Malformed("wrong_type")
    if isinstance(v, (int, float)):
        x = float(v)
    elif isinstance(v, str):
        try:
            x = float(v.strip())
        except ValueError:
            raise Malformed("wrong_type")
    else:
        raise Malformed("wrong_type")
    if not math.isfinite(x) or x < 0:
        raise Malformed("wrong_type")
    return x * scale


def label_text(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return str(v)
    raise Malformed("wrong_type")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--status-field", default="status")
    p.add_argument("--model-field", default="model")
    p.add_argument("--route-field", default="")
    p.add_argument("--user-field", default="")
    p.add_argument("--duration-field", default="duration_ms")
    p.add_argument("--duration-unit", default="ms", choices=["ms", "s"])
    p.add_argument("--code-label", default="code", choices=["code", "class"])
    p.add_argument("--buckets", default="0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,120")
    p.add_argument("--allow", action="append", default=[])
    p.add_argument("--max-values", action="append", default=[])
    p.add_argument("--overflow-value", default="__other__")
    p.add_argument("--max-series", type=int, default=5000)
    p.add_argument("--max-line-bytes", type=int, default=65536)
    p.add_argument("--max-label-bytes", type=int, default=128)
    p.add_argument("--prefix", default="logmetrics")
    p.add_argument("--pod", default="")
    p.add_argument("--pod-template-hash", default="")
    p.add_argument("--listen", default="127.0.0.1:0")
    a = p.parse_args()

    mapped = {"code": a.status_field, "model": a.model_field, "route": a.route_field,
              "user": a.user_field}
    labels = [l for l in LABELS if mapped[l]]
    caps, default_cap, allow = {}, 50, {}
    for m in a.max_values:
        if "=" in m:
            k, v = m.split("=", 1)
            caps[k] = int(v)
        else:
            default_cap = int(m)
    for al in a.allow:
        k, v = al.split("=", 1)
        allow.setdefault(k, set()).update(x for x in v.split(",") if x)
    dims = {l: Dim(allow.get(l), caps.get(l, default_cap), a.overflow_value, a.max_label_bytes)
            for l in labels}
    paths = {l: mapped[l].split(".") for l in labels}
    dur_path = a.duration_field.split(".") if a.duration_field else None
    scale = 0.001 if a.duration_unit == "ms" else 1.0
    const = {"pod": a.pod, "rollouts_pod_template_hash": a.pod_template_hash}
    const_names = list(const)
    hist_labels = [l for l in ("model", "route") if l in labels]

    reg = CollectorRegistry()
    pfx = a.prefix
    requests = Counter(f"{pfx}_requests", "Requests read from the access log.",
                       const_names + labels, registry=reg)
    latency = Histogram(f"{pfx}_request_duration_seconds", "Request duration.",
                        const_names + hist_labels, registry=reg,
                        buckets=[float(b) for b in a.buckets.split(",")])
    lines_total = Counter(f"{pfx}_lines", "Lines read.", const_names, registry=reg)
    malformed = Counter(f"{pfx}_malformed_lines", "Malformed lines.", const_names + ["reason"],
                        registry=reg)
    no_duration = Counter(f"{pfx}_lines_without_duration", "Without duration.", const_names,
                          registry=reg)
    series_overflow = Counter(f"{pfx}_series_overflow", "Series cap reached.", const_names,
                              registry=reg)
    series = set()
    host, port = a.listen.rsplit(":", 1)
    start_http_server(int(port), addr=host, registry=reg)

    started = time.monotonic()
    n = 0
    for raw in sys.stdin.buffer:
        n += 1
        line = raw[:-1] if raw.endswith(b"\n") else raw
        try:
            if len(line) > a.max_line_bytes:
                raise Malformed("too_long")
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line.strip():
                raise Malformed("empty")
            try:
                obj = json.loads(line)
            except ValueError:
                raise Malformed("not_json")
            if not isinstance(obj, dict):
                raise Malformed("not_object")
            st = lookup(obj, paths["code"])
            if st is None:
                raise Malformed("missing_status")
            code = status_code(st)
            dur = lookup(obj, dur_path) if dur_path else None
            secs = None if dur is None else seconds(dur, scale)
            texts = [label_text(lookup(obj, paths[l])) for l in labels[1:]]
        except Malformed as m:
            malformed.labels(*const.values(), m.reason).inc()
            lines_total.labels(*const.values()).inc()
            continue
        code_text = str(code) if a.code_label == "code" else f"{code // 100}xx"
        values = [dims["code"].value(code_text)]
        values += [dims[l].value(t) for l, t in zip(labels[1:], texts)]
        key = tuple(values)
        if key not in series:
            if len(series) >= a.max_series:
                values = values[:1] + [a.overflow_value] * (len(values) - 1)
                key = tuple(values)
                series_overflow.labels(*const.values()).inc()
            series.add(key)
        lines_total.labels(*const.values()).inc()
        requests.labels(*const.values(), *values).inc()
        if secs is None:
            no_duration.labels(*const.values()).inc()
        else:
            by = dict(zip(labels, values))
            latency.labels(*const.values(), *(by[l] for l in hist_labels)).observe(secs)
    elapsed = time.monotonic() - started
    sys.stdout.write(generate_latest(reg).decode())
    bad = sum(s.value for m in malformed.collect() for s in m.samples if s.name.endswith("_total"))
    print(f"reference: {n} lines ({n - int(bad)} requests, {int(bad)} malformed) in "
          f"{elapsed:.3f} s: {n / max(elapsed, 1e-9):.0f} lines/s", file=sys.stderr)


if __name__ == "__main__":
    main()
