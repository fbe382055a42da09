#!/usr/bin/env python3
"""The logmetrics benchmark (run through scripts/bench-logmetrics, which prepares everything).

    bench_logmetrics.py compare TOLLGATE VENV_PYTHON DATA
    bench_logmetrics.py longrun TOLLGATE DATA COPIES

compare: runs the reference exporter and `tollgate logmetrics --exit-on-eof` on the same file
under /usr/bin/time -v, prints lines/s and peak RSS with ratios, and checks that both end with
the same counters. longrun: follows a file fed COPIES times with DATA (rotating it on the way)
and samples RSS every second.
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
# Same mapping and rules for both exporters.
FLAGS = ["--route-field", "route", "--user-field", "user", "--max-values", "50",
         "--max-values", "user=100", "--max-series", "15000", "--pod", "litellm-7d9f-abcde", "--pod-template-hash", "7d9f"]


def timed(cmd, data, out_path):
    """Runs cmd with stdin from data under /usr/bin/time -v: (wall s, peak RSS KiB, stderr)."""
    with open(data, "rb") as stdin, open(out_path, "wb") as stdout:
        p = subprocess.run(["/usr/bin/time", "-v"] + cmd, stdin=stdin, stdout=stdout,
                           stderr=subprocess.PIPE, check=True)
    err = p.stderr.decode()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", err).group(1)
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    return secs, rss, err


def samples(path, families):
    """{(name, frozenset(labels)): value} for the given metric names in an exposition file."""
    out = {}
    pat = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([^ ]+)$')
    for line in open(path, encoding="utf-8"):
        m = pat.match(line.strip())
        if not m or m.group(1) not in families:
            continue
        labels = re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or "")
        # Bucket bounds print as "1" or "1.0" depending on the exporter: compare them as numbers.
        labels = frozenset((k, repr(float(v)) if k == "le" else v) for k, v in labels)
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def compare(tollgate, python, data):
    lines = sum(1 for _ in open(data, "rb"))
    work = tempfile.mkdtemp(prefix="logmetrics-bench-")
    runs = {}
    cmds = {
        "reference (Python, prometheus_client)": [python, os.path.join(HERE, "logmetrics_reference.py"),
                                                  "--listen", "127.0.0.1:0"] + FLAGS,
        "tollgate logmetrics": [tollgate, "logmetrics", "--exit-on-eof", "--listen", "127.0.0.1:0"] + FLAGS,
    }
    for i, (name, cmd) in enumerate(cmds.items()):
        out = os.path.join(work, f"{i}.prom")
        secs, rss, err = timed(cmd, data, out)
        summary = [l for l in err.splitlines() if "lines/s" in l]
        runs[name] = (secs, rss, out, summary[0] if summary else "")
    (rs, rr, rout, rsum), (ts, tr, tout, tsum) = runs.values()
    print(f"\nlogmetrics vs reference: {lines:,} lines ({os.path.getsize(data) / 2**20:.0f} MiB) from {data}\n")
    print(f"| exporter | wall time | lines/s | peak RSS |")
    print(f"|---|---|---|---|")
    for name, (secs, rss, _, _) in runs.items():
        print(f"| {name} | {secs:.2f} s | {lines / secs:,.0f} | {rss / 1024:.1f} MiB |")
    print(f"\nthroughput ratio: {rs / ts:.1f}x (target >= 10x)   RSS ratio: {tr / rr:.3f} = 1/{rr / tr:.1f} (target <= 1/5)")
    print(f"  {rsum}\n  {tsum}")
    fams = {"logmetrics_requests_total", "logmetrics_malformed_lines_total",
            "logmetrics_request_duration_seconds_count", "logmetrics_request_duration_seconds_bucket",
            "logmetrics_lines_total",
            "logmetrics_lines_without_duration_total", "logmetrics_series_overflow_total"}
    ref, ours = samples(rout, fams), samples(tout, fams)
    # prometheus_client leaves out a reason that never occurred; zero-valued samples do not count.
    ref = {k: v for k, v in ref.items() if v != 0}
    ours = {k: v for k, v in ours.items() if v != 0}
    if ref != ours:
        missing = sorted(set(ref.items()) - set(ours.items()), key=str)[:5]
        extra = sorted(set(ours.items()) - set(ref.items()), key=str)[:5]
        print(f"MISMATCH: counters differ\n  only in reference: {missing}\n  only in tollgate: {extra}")
        sys.exit(1)
    total = sum(v for (n, _), v in ours.items() if n == "logmetrics_requests_total")
    series = sum(1 for (n, _) in ours if n == "logmetrics_requests_total")
    print(f"sanity: both exporters agree on {len(ours)} samples "
          f"({series} request series, {total:,.0f} requests)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    m = re.search(r"^logmetrics_lines_total\{[^}]*\} (\d+)", text, re.M)
    return int(m.group(1)) if m else None


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def longrun(tollgate, data, copies):
    per_copy = sum(1 for _ in open(data, "rb"))
    work = tempfile.mkdtemp(prefix="logmetrics-longrun-")
    log = os.path.join(work, "access.log")
    port = free_port()
    proc = subprocess.Popen([tollgate, "logmetrics", "--input", log, "--start-at", "beginning",
                             "--listen", f"127.0.0.1:{port}", "--poll-interval", "100ms"] + FLAGS,
                            stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    rows = []
    started = time.monotonic()
    last_sample = 0.0

    def sample():
        nonlocal last_sample
        if time.monotonic() - last_sample >= 1.0:
            last_sample = time.monotonic()
            rows.append((last_sample - started, scrape(port) or 0, rss_kib(proc.pid)))

    def wait_for(expected):
        deadline = time.monotonic() + 600
        while (scrape(port) or 0) < expected:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"follower stalled below {expected} lines")
            sample()
            time.sleep(0.05)

    try:
        fed = 0
        for i in range(copies):
            # Appended in pieces, as a writer would, while the exporter follows.
            with open(data, "rb") as src, open(log, "ab") as dst:
                while chunk := src.read(8 << 20):
                    dst.write(chunk)
                    dst.flush()
                    sample()
            fed += per_copy
            if i % 3 == 2 and i + 1 < copies:
                # Rotate as logrotate does (rename, new file) once the exporter has caught up.
                wait_for(fed)
                os.replace(log, log + ".1")
        wait_for(fed)
        last_sample = 0.0
        sample()
    finally:
        proc.terminate()
        proc.wait()
    secs = rows[-1][0]
    print(f"\nlong run: {fed:,} lines followed from a file rotated every 3 copies, "
          f"{fed / secs:,.0f} lines/s including feeding; RSS sampled every second\n")
    print("| t (s) | lines read | RSS |\n|---|---|---|")
    picks = sorted({0, len(rows) // 4, len(rows) // 2, 3 * len(rows) // 4, len(rows) - 1})
    for i in picks:
        t, n, r = rows[i]
        print(f"| {t:.0f} | {n:,} | {r / 1024:.1f} MiB |")
    rss = [r for _, n, r in rows if n > 0]
    if rss:
        print(f"\nRSS over {len(rows)} samples while reading: min {min(rss) / 1024:.1f} MiB, "
              f"max {max(rss) / 1024:.1f} MiB; start {rss[0] / 1024:.1f}, middle "
              f"{rss[len(rss) // 2] / 1024:.1f}, end {rss[-1] / 1024:.1f} MiB")
    for f in (log, log + ".1"):
        if os.path.exists(f):
            os.remove(f)


if __name__ == "__main__":
    if sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "longrun":
        longrun(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(__doc__)
