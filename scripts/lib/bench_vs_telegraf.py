#!/usr/bin/env python3
"""logmetrics vs Telegraf vs the Python reference (run through scripts/bench-logmetrics).

    bench_vs_telegraf.py TOLLGATE VENV_PYTHON TELEGRAF TELEGRAF_CONF DATA

One mapping for all three: requests by code/model/route, a latency histogram by model/route
with logmetrics' default buckets (no cap is reached, so the mappings coincide). Four runs on the
same file, one after the other:

- the reference and `tollgate logmetrics --exit-on-eof` read it on stdin and exit at its end
  (wall and CPU time of the whole process, as /usr/bin/time -v gives them);
- `tollgate logmetrics --input FILE --start-at beginning` and Telegraf (tail, json_v2, histogram
  aggregators, prometheus_client) follow the file, as sidecars do: /metrics is scraped every
  50 ms from the start until it counts every line; wall time and CPU time (from /proc) are taken
  at that scrape, then the process is stopped.

Peak RSS is /usr/bin/time -v's for every run. Prints one table, the ratios against Telegraf and
the goal (>= 2x its throughput at <= 1/2 its RSS), and fails when the counters disagree: all
families between the reference and both logmetrics runs; requests per code/model/route, every
histogram bucket, and the dropped lines between logmetrics and Telegraf.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts for the import below
from bench_logmetrics import free_port, samples, timed  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FLAGS = ["--route-field", "route", "--pod", "litellm-7d9f-abcde", "--pod-template-hash", "7d9f"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
FAMILIES = {"logmetrics_requests_total", "logmetrics_malformed_lines_total",
            "logmetrics_request_duration_seconds_count", "logmetrics_request_duration_seconds_bucket",
            "logmetrics_lines_total", "logmetrics_lines_without_duration_total",
            "logmetrics_series_overflow_total", "logmetrics_label_overflow_total"}
TELEGRAF_FAMILIES = {"logmetrics_requests_bucket", "logmetrics_duration_ms_bucket"}
POLL = 0.05
STALL = 20.0


def cpu_seconds(err):
    """User + system seconds from /usr/bin/time -v's report."""
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", err).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", err).group(1))
    return user + system


def batch(name, cmd, data, work):
    out = os.path.join(work, f"{len(os.listdir(work))}.prom")
    secs, rss, err = timed(cmd, data, out)
    return {"name": name, "reads": "stdin, exits at EOF", "wall": secs, "rss": rss,
            "cpu": cpu_seconds(err), "prom": out}


def scrape(port):
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None


def child_of(pid):
    """The process /usr/bin/time started (its only child)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
        except OSError:
            kids = []
        if kids:
            return int(kids[0])
        time.sleep(0.005)
    raise SystemExit(f"no child under /usr/bin/time ({pid})")


def proc_cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def follow(name, cmd, env, done, work):
    """Starts a follower under /usr/bin/time -v, scrapes it until done(text) holds, stops it."""
    log = open(os.path.join(work, f"{name.split()[0]}.log"), "wb")
    started = time.monotonic()
    proc = subprocess.Popen(["/usr/bin/time", "-v", "-o", log.name + ".time"] + cmd, env=env,
                            stdout=log, stderr=log)
    pid = child_of(proc.pid)
    port = env["BENCH_PORT"]
    last, changed, text = None, started, None
    try:
        while True:
            text = scrape(port)
            now = time.monotonic()
            if text is not None and done(text):
                break
            if text != last:
                last, changed = text, now
            if proc.poll() is not None or now - changed > STALL:
                raise SystemExit(f"{name} stopped short of the last line; log: {log.name}\n"
                                 f"last scrape:\n{(text or '')[-2000:]}")
            time.sleep(POLL)
        wall, cpu = time.monotonic() - started, proc_cpu(pid)
    finally:
        if proc.poll() is None:
            os.kill(pid, signal.SIGTERM)
        proc.wait(timeout=60)
    prom = os.path.join(work, f"{name.split()[0]}.prom")
    with open(prom, "w") as f:
        f.write(text)
    report = open(log.name + ".time").read()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", report).group(1))
    return {"name": name, "reads": "follows the file, scraped", "wall": wall, "rss": rss,
            "cpu": cpu, "prom": prom, "log": log.name}


def total(text, family, pattern=""):
    return sum(float(m.group(1)) for m in
               re.finditer(rf"^{family}{{[^}}]*{pattern}[^}}]*}} (\S+)$", text, re.M))


def telegraf_views(prom):
    """Telegraf's scrape as {(code, model, route): requests} and {(model, route, le s): count}."""
    requests, buckets = {}, {}
    for (name, labels), v in samples(prom, TELEGRAF_FAMILIES).items():
        l = dict(labels)
        if name == "logmetrics_requests_bucket":
            requests[(l["code"], l["model"], l["route"])] = v
        else:
            le = l["le"] if l["le"] == "inf" else repr(float(l["le"]) / 1000)
            buckets[(l["model"], l["route"], le)] = v
    return requests, buckets


def logmetrics_views(prom):
    requests, buckets = {}, {}
    for (name, labels), v in samples(prom, FAMILIES).items():
        l = dict(labels)
        if name == "logmetrics_requests_total":
            requests[(l["code"], l["model"], l["route"])] = v
        elif name == "logmetrics_request_duration_seconds_bucket":
            buckets[(l["model"], l["route"], l["le"])] = v
    return requests, buckets


def differ(what, a, b, names):
    if a == b:
        return False
    only_a = sorted(set(a.items()) - set(b.items()), key=str)[:5]
    only_b = sorted(set(b.items()) - set(a.items()), key=str)[:5]
    print(f"MISMATCH in {what}\n  only in {names[0]}: {only_a}\n  only in {names[1]}: {only_b}")
    return True


def cross_check(runs, malformed_logged):
    """Fails loudly where counters that should agree do not."""
    ref, ours, follower, telegraf = runs
    nonzero = lambda r: {k: v for k, v in samples(r["prom"], FAMILIES).items() if v != 0}
    bad = False
    for other in (ours, follower):
        bad |= differ("every family", nonzero(ref), nonzero(other), (ref["name"], other["name"]))
    overflow = [k for k in nonzero(follower) if k[0].endswith("overflow_total")]
    if overflow:
        print(f"MISMATCH: a cap was reached, so the mappings do not coincide: {overflow}")
        bad = True
    (lreq, lbuck), (treq, tbuck) = logmetrics_views(follower["prom"]), telegraf_views(telegraf["prom"])
    bad |= differ("requests per code/model/route", lreq, treq, ("logmetrics", "Telegraf"))
    bad |= differ("histogram buckets per model/route", lbuck, tbuck, ("logmetrics", "Telegraf"))
    text = open(follower["prom"]).read()
    malformed = total(text, "logmetrics_malformed_lines_total")
    if malformed != malformed_logged:
        print(f"MISMATCH: logmetrics counted {malformed:.0f} malformed lines, Telegraf logged "
              f"{malformed_logged} dropped lines")
        bad = True
    if bad:
        sys.exit(1)
    print(f"cross-check: the reference and logmetrics agree on every family; logmetrics and "
          f"Telegraf on {len(lreq)} request series ({sum(lreq.values()):,.0f} requests), "
          f"{len(lbuck)} histogram buckets ({sum(v for k, v in lbuck.items() if k[2] == 'inf'):,.0f} "
          f"durations) and {malformed_logged:,} dropped lines")


def table(runs, lines, data, telegraf_version, load):
    print(f"\nlogmetrics vs {telegraf_version} vs the reference: {lines:,} lines "
          f"({os.path.getsize(data) / 2**20:.0f} MiB) from {data}; {os.cpu_count()} cores, "
          f"load average {load} before the runs\n")
    print("| exporter | reads | wall time | lines/s | peak RSS | CPU s per million lines |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['name']} | {r['reads']} | {r['wall']:.2f} s | {lines / r['wall']:,.0f} | "
              f"{r['rss'] / 1024:.1f} MiB | {r['cpu'] / lines * 1e6:.2f} |")
    follower, telegraf = runs[2], runs[3]
    speed = telegraf["wall"] / follower["wall"]
    rss = follower["rss"] / telegraf["rss"]
    cpu = follower["cpu"] / telegraf["cpu"]
    print(f"\nlogmetrics following vs Telegraf: {speed:.1f}x the throughput (goal >= 2x), "
          f"RSS {rss:.3f} = 1/{1 / rss:.1f} (goal <= 1/2), CPU per line {cpu:.3f} = 1/{1 / cpu:.1f}")
    met = speed >= 2 and rss <= 0.5
    print(f"goal {'met' if met else 'MISSED'}: throughput {'met' if speed >= 2 else 'missed'}, "
          f"RSS {'met' if rss <= 0.5 else 'missed'}")


def main(tollgate, python, telegraf, conf, data):
    lines = sum(1 for _ in open(data, "rb"))
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    work = tempfile.mkdtemp(prefix="logmetrics-vs-telegraf-")
    version = subprocess.run([telegraf, "--version"], capture_output=True, text=True).stdout.strip()
    runs = [
        batch("reference (Python, prometheus_client)",
              [python, os.path.join(HERE, "logmetrics_reference.py"), "--listen", "127.0.0.1:0"]
              + FLAGS, data, work),
        batch("tollgate logmetrics --exit-on-eof",
              [tollgate, "logmetrics", "--exit-on-eof", "--listen", "127.0.0.1:0"] + FLAGS, data, work),
    ]
    port = free_port()
    env = dict(os.environ, BENCH_PORT=str(port))
    runs.append(follow("tollgate logmetrics --input FILE",
                       [tollgate, "logmetrics", "--input", data, "--start-at", "beginning",
                        "--listen", f"127.0.0.1:{port}"] + FLAGS, env,
                       lambda t: total(t, "logmetrics_lines_total") == lines, work))
    expected = open(runs[2]["prom"]).read()
    requests = total(expected, "logmetrics_requests_total")
    durations = total(expected, "logmetrics_request_duration_seconds_count")
    port = free_port()
    env = dict(os.environ, BENCH_PORT=str(port), TOLLGATE_TELEGRAF_FILE=data,
               TOLLGATE_TELEGRAF_LISTEN=f"127.0.0.1:{port}")
    runs.append(follow(f"Telegraf {version.split()[-1]}",
                       [telegraf, "--strict-env-handling", "--config", conf], env,
                       lambda t: total(t, "logmetrics_requests_bucket") == requests
                       and total(t, "logmetrics_duration_ms_bucket", 'le="\\+Inf"') == durations,
                       work))
    dropped = sum(1 for l in open(runs[3]["log"], errors="replace") if "Malformed log line" in l)
    table(runs, lines, data, version, load)
    cross_check(runs, dropped)
    shutil.rmtree(work)  # kept when a check fails, for its logs and scrapes


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    main(*sys.argv[1:])
