#!/usr/bin/env python3
"""Writes LiteLLM-like JSON access-log lines to stdout, deterministically (fixed seed).

    gen_access_log.py LINES [SEED]

Each line: timestamp, level, request id, model (8 common aliases, a tail of rare fine-tunes),
route, status (mostly 200; some 4xx/5xx; a few as strings), duration in ms, user (a few hundred),
token counts and nested metadata. About 1% of lines are malformed in the ways real logs are:
plain-text lines, truncated JSON, missing or non-numeric status, arrays, blank lines.
"""
import json
import random
import sys

MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet", "llama-3-70b", "mistral-small",
          "qwen-2.5-72b", "gemini-flash", "deepseek-v3"]
MODEL_WEIGHTS = [30, 20, 15, 10, 8, 7, 6, 4]
RARE = [f"ft:team-{i:02d}" for i in range(16)]
ROUTES = ["/v1/chat/completions", "/chat/completions", "/v1/completions", "/v1/embeddings",
          "/v1/models"]
ROUTE_WEIGHTS = [70, 10, 8, 10, 2]
STATUSES = [200, 201, 400, 401, 404, 408, 429, 500, 502, 503]
STATUS_WEIGHTS = [930, 5, 10, 5, 10, 3, 15, 10, 7, 5]
USERS = [f"user-{i:03d}" for i in range(300)]


def main():
    lines = int(sys.argv[1])
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 42)
    out = sys.stdout
    buf = []
    base = 1_767_225_600  # 2026-01-01T00:00:00Z
    for i in range(lines):
        t = base + i // 500
        ts = f"2026-01-01T{(t // 3600) % 24:02d}:{(t // 60) % 60:02d}:{t % 60:02d}.{i % 1000:03d}Z"
        r = rng.random()
        if r < 0.01:
            buf.append(malformed(rng, ts))
            continue
        model = rng.choices(MODELS, MODEL_WEIGHTS)[0] if r > 0.015 else rng.choice(RARE)
        status = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
        rec = {
            "timestamp": ts,
            "level": "INFO",
            "request_id": f"chatcmpl-{rng.getrandbits(64):016x}",
            "model": model,
            "route": rng.choices(ROUTES, ROUTE_WEIGHTS)[0],
            "method": "POST",
            "status": str(status) if rng.random() < 0.03 else status,
            "duration_ms": round(rng.lognormvariate(6.5, 0.9), 1) if rng.random() > 0.005 else None,
            "user": rng.choice(USERS),
            "prompt_tokens": rng.randint(10, 4000),
            "completion_tokens": rng.randint(0, 1500),
            "cache_hit": rng.random() < 0.1,
            "api_base": "https://upstream.example/v1",
            "metadata": {"user_api_key_alias": f"key-{rng.randint(0, 40)}", "team": "llm-platform",
                         "tags": ["prod", "gateway"]},
        }
        buf.append(json.dumps(rec, separators=(",", ":")))
        if len(buf) >= 10000:
            out.write("\n".join(buf) + "\n")
            buf.clear()
    if buf:
        out.write("\n".join(buf) + "\n")


def malformed(rng, ts):
    kind = rng.randrange(6)
    if kind == 0:
        return f"{ts} INFO: Uvicorn running on http://0.0.0.0:4000 (Press CTRL+C to quit)"
    if kind == 1:
        full = json.dumps({"timestamp": ts, "model": "gpt-4o", "status": 200, "duration_ms": 12.5})
        return full[: rng.randrange(5, len(full) - 1)]
    if kind == 2:
        return json.dumps({"timestamp": ts, "model": "gpt-4o", "duration_ms": 10})
    if kind == 3:
        return json.dumps({"timestamp": ts, "model": "gpt-4o", "status": "OK", "duration_ms": 10})
    if kind == 4:
        return json.dumps([ts, "gpt-4o", 200])
    return ""


if __name__ == "__main__":
    main()
