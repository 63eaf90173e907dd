#!/usr/bin/env python3
"""Rewrites the measured tables of docs/performance.md from the benchmarks' JSON in target/bench/.

Each table sits between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`; a section whose JSON is
missing is left as it is. Every rewritten section opens with the date of its JSON file and the
machine it ran on. The latency plots (target/bench/latency.svg, latency-tmpfs.svg) are copied to docs/.

    scripts/bench/render.py [NAME...]  rewrite from target/bench/NAME.json (default: every section)
    scripts/bench/render.py --check    only check that every section's markers are present, once
    scripts/bench/render.py --sections print the section names (the benchmarks, in run order)
"""
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "performance.md")
BENCH = os.path.join(ROOT, "target", "bench")
SECTIONS = ["edge", "latency", "latency-tmpfs", "proxy", "reconciler", "attack", "orphans", "tls", "notify"]

# Goals of the performance issue, checked where the numbers are rendered.
GOAL_EDGE_OVER_PGBENCH = 2.0
GOAL_EDGE_OVER_PEER = 6.0
GOAL_EDGE_CPU_US = 40.0
GOAL_P99_MS, GOAL_P999_MS = 10.0, 25.0
# With a WAL flush that costs nothing (Postgres on tmpfs): the edge's own tail.
GOAL_TMPFS_P99_MS, GOAL_TMPFS_P999_MS = 5.0, 15.0


def machine():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    placed = [(name, os.environ.get(var)) for name, var in (
        ("load generators", "BENCH_CLIENT_CPUS"), ("servers", "BENCH_SERVER_CPUS"),
        ("Postgres", "BENCH_PG_CPUS"))]
    placement = ", ".join(f"{name} on CPUs {cpus}" for name, cpus in placed if cpus)
    return (f"{os.cpu_count()} cores ({model}), {platform.machine()}"
            + (f" ({placement})" if placement else ""))


def header(path, command):
    date = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
    return (f"Measured on {date:%Y-%m-%d} on {machine()} by `{command}` "
            f"(`target/bench/{os.path.basename(path)}`).\n")


def met(ok):
    return "met" if ok else "**missed**"


def n(x, digits=0):
    return f"{x:,.{digits}f}"


def render_edge(d):
    rows = ["| run | req/s | p50 ms | p99 ms | edge CPU µs/event | Postgres CPU µs/event "
            "| load generator CPU µs/event | ledger |", "|---|---:|---:|---:|---:|---:|---:|---|"]

    def row(label, r):
        check = "one row per 2xx" if r["rows_checked"] else "**MISMATCH**"
        return (f"| {label} | {n(r['rps'])} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                f"{r['app_cpu_us_per_req']:.0f} | {r['pg_cpu_us_per_req']:.0f} | "
                f"{r['loadgen_cpu_us_per_req']:.0f} | {check} |")
    peers = d.get("peer_32", [])
    for i, p in enumerate(d["pgbench_32"]):
        rows.append(f"| round {p['round']}: pgbench, one-event transaction, 32 clients | {n(p['tps'])} "
                    f"| | | | {p['pg_cpu_us_per_tx']} | | every order paid |")
        rows.append(row(f"round {p['round']}: edge, 32 connections", d["edge_32"][i]))
        if i < len(peers):
            rows.append(row(f"round {p['round']}: Node peer, 32 connections", peers[i]))
    name = {"edge": "edge", "peer": "Node peer"}
    for r in d.get("other", []):
        rows.append(row(f"{name[r['server']]}, {r['connections']} connections", r))
    edge = d["edge_32"]
    cpu = statistics.median(r["app_cpu_us_per_req"] for r in edge)
    pg = statistics.median(r["pg_cpu_us_per_req"] for r in edge)
    lg = statistics.median(r["loadgen_cpu_us_per_req"] for r in edge)

    def rounds(key):
        return ", ".join(f"{x:.2f}" for x in d.get(key + "_rounds", []))
    goals = ["| goal (32 connections) | this run | |", "|---|---|---|"]
    r = d["edge_over_pgbench_32"]
    goals.append(f"| edge / pgbench ≥ {GOAL_EDGE_OVER_PGBENCH} | **{r:.2f}** (rounds: "
                 f"{rounds('edge_over_pgbench_32')}) | {met(r >= GOAL_EDGE_OVER_PGBENCH)} |")
    if "edge_over_peer_32" in d:
        r = d["edge_over_peer_32"]
        goals.append(f"| edge / Node peer ≥ {GOAL_EDGE_OVER_PEER:.0f} | **{r:.2f}** (rounds: "
                     f"{rounds('edge_over_peer_32')}) | {met(r >= GOAL_EDGE_OVER_PEER)} |")
    goals.append(f"| edge CPU per event ≤ {GOAL_EDGE_CPU_US:.0f} µs | **{cpu:.0f} µs** (median of "
                 f"rounds) | {met(cpu <= GOAL_EDGE_CPU_US)} |")
    goals.append(f"| edge peak RSS | {d['edge_peak_rss_mb']:.1f} MB (Node peer "
                 f"{d['peer_peak_rss_mb']:.0f} MB) | |")
    split = (f"Per event at 32 connections (medians of the rounds): the edge {cpu:.0f} µs of CPU, "
             f"Postgres {pg:.0f} µs, the load generator {lg:.0f} µs. Mean events per commit: "
             f"{d['edge_mean_events_per_commit']:.1f}.")
    upd = d.get("orders_updates")
    if upd:
        share = 100 * upd["hot"] / max(upd["all"], 1)
        split += (f" Order updates during the edge's runs: {n(upd['all'])}, of which HOT "
                  f"{n(upd['hot'])} ({share:.0f} %, `pg_stat_user_tables`).")
    split += "\n"
    return "\n".join(rows) + "\n\n" + "\n".join(goals) + "\n\n" + split


def render_latency_tmpfs(d):
    return render_latency(d, "latency-tmpfs.svg", (GOAL_TMPFS_P99_MS, GOAL_TMPFS_P999_MS))


def render_latency(d, svg="latency.svg", goal=(GOAL_P99_MS, GOAL_P999_MS)):
    rows = [f"| share of the maximum ({n(d['max_rps'])} req/s) | offered req/s | achieved | p50 ms "
            "| p99 ms | p99.9 ms | max ms | p99 of the seconds: best / median / worst "
            "| commits over 25 ms | webhooks over 25 ms (edge) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in d["points"]:
        commits = f"{n(p['commits_over_25ms'])} of {n(p['commits'])}" if "commits" in p else "—"
        hooks = f"{n(p['webhooks_over_25ms'])} of {n(p['webhooks'])}" if "webhooks" in p else "—"
        sp = p.get("second_p99_ms")
        spread = f"{sp['best']:.1f} / {sp['median']:.1f} / {sp['worst']:.1f}" if sp else "—"
        rows.append(f"| {p['percent']} % | {n(p['rate'])} | {n(p['achieved'])} | {p['p50_ms']:.2f} | "
                    f"{p['p99_ms']:.1f} | {p['p999_ms']:.1f} | {p['max_ms']:.1f} | {spread} | {commits} | "
                    f"{hooks} |")
    half = next(p for p in d["points"] if p["percent"] == 50)
    ok = half["p99_ms"] < goal[0] and half["p999_ms"] < goal[1]
    return ("\n".join(rows) + f"\n\nGoal at 50 %: p99 < {goal[0]:.0f} ms and p99.9 < "
            f"{goal[1]:.0f} ms: {met(ok)} (p99 {half['p99_ms']:.1f} ms, p99.9 "
            f"{half['p999_ms']:.1f} ms).\n\n![Webhook latency against the offered rate]({svg})\n")


def render_proxy(d):
    s = d["summary"]
    names = {"direct": "the app, direct", "edge": "through the edge", "nginx": "through nginx",
             "haproxy": "through HAProxy", "floor": "through bare hyper (`hyper-floor`)"}
    rows = ["| target | req/s (median) | p99 ms | proxy CPU µs per request |", "|---|---:|---:|---:|"]
    for k in ("direct", "edge", "nginx", "haproxy", "floor"):
        if k in s:
            cpu = s[k]["cpu_us_per_req"]
            rows.append(f"| {names[k]} | {n(s[k]['rps'])} | {s[k]['p99_ms']:.2f} | "
                        f"{'—' if cpu is None else f'{cpu:.1f}'} |")
    r = d["ratios"]
    out = "\n".join(rows) + "\n\n"
    out += (f"- **edge / nginx {r['edge/nginx']:.2f}, edge / HAProxy {r['edge/haproxy']:.2f}** "
            f"(medians of the rounds' paired ratios; goal ≥ 1.0: "
            f"{met(min(r['edge/nginx'], r['edge/haproxy']) >= 1.0)}).\n")
    if "floor/nginx" in r:
        out += (f"- The floor of the stack (hyper's HTTP/1 server and client alone): **floor / nginx "
                f"{r['floor/nginx']:.2f}** at {r['floor/nginx cpu']:.2f}× its CPU per request; the edge "
                f"spends {r['edge/floor cpu']:.2f}× the floor's.\n")
    st = d.get("stream")
    if st:
        out += (f"- **Streaming {st['stream_mb']} MB each way: the edge's RSS went from "
                f"{st['edge_rss_before_mb']:.1f} MB to a peak of {st['edge_peak_rss_mb']:.1f} MB** "
                f"({st['download_mb_s']:.0f} MB/s down, {st['upload_mb_s']:.0f} MB/s up): bodies are "
                f"never buffered.\n")
    return out


def render_reconciler(d):
    rows = ["| window | missing | seconds | events/s | Stripe requests | peak RSS | checked |",
            "|---:|---:|---:|---:|---:|---:|---|"]
    for r in d:
        req = f"{n(r['stripe_requests'])}" + (" = ceil(n/100)" if r["stripe_requests"] == r["expected_requests"]
                                             else f" (expected {n(r['expected_requests'])})")
        rows.append(f"| {n(r['events'])} | {n(r['missing'])} | {r['seconds']:.2f} | "
                    f"{n(r['events_per_s'])} | {req} | {r['peak_rss_mb']:.1f} MB | "
                    f"{'every order paid' if r['checked'] else '**MISMATCH**'} |")
    return "\n".join(rows) + "\n"


def render_attack(d):
    rows = ["| scenario | what the edge did | signed webhooks meanwhile | edge memory and fds |",
            "|---|---|---|---|"]
    badsig = {}
    for s in d["scenarios"]:
        name = s["scenario"]
        if name == "bad-signature":
            r = s["result"]
            badsig.setdefault(r["bytes"], {})[s["server"]] = r
            continue
        if name == "ready-flood":
            alone, flooded = s["webhooks_alone_per_s"], s["webhooks_flooded_per_s"]
            rows.append(f"| `/ready` flood, 32 connections | flood served at "
                        f"{n(s['flood']['per_second'])} req/s (the admin pacer) | {n(flooded)} req/s "
                        f"against {n(alone)} alone ({(flooded / alone - 1) * 100:+.0f} %) | — |")
            continue
        a, w = s["attack"], s.get("webhooks", {})
        statuses = ", ".join(f"{c} × {k}" for k, c in sorted(w.get("statuses", {}).items()))
        hooks = f"{statuses}, slowest {w.get('slowest_ms', 0):.1f} ms" if w else "—"
        if name.startswith("trickle") or name.startswith("h2c"):
            answers = ", ".join(f"{c} × {k}" for k, c in sorted(a.get("answers", {}).items()))
            did = f"answers: {answers}"
            mem = f"peak RSS {s['peak_rss_mb']} MB; {s['rss_after_mb']} MB after"
        else:
            did = (f"{n(a.get('closed_by_edge', 0))} of {n(a['connections'])} closed by the edge, the "
                   f"last at {a.get('last_closed_after_s', 0):.1f} s; {a.get('refused', 0)} refused")
            if name == "ulimit-1024":
                did += f"; {s.get('accept_errors', 0)} failed accepts; `/live` in {s['live_s'] * 1000:.1f} ms"
                mem = f"peak RSS {s['peak_rss_mb']} MB"
            else:
                mem = f"peak RSS {s['peak_rss_mb']} MB; fds {s['fds_baseline']} → {s['fds_after']}"
        rows.append(f"| {name} | {did} | {hooks} | {mem} |")
    out = "\n".join(rows) + "\n"
    if badsig:
        out += ("\nThe bad-signature path (CPU per request from `/proc/<pid>/stat`):\n\n"
                "| body | edge | Node peer | edge / Node |\n|---|---|---|---|\n")
        for size, by in sorted(badsig.items()):
            e, p = by.get("edge"), by.get("node")
            cell = lambda r: f"{n(r['per_second'])} req/s, {n(r['edge_cpu_us_per_request'])} µs CPU" if r else "—"
            ratio = f"**{e['per_second'] / p['per_second']:.2f}×**" if e and p else "—"
            label = f"{size // 1024} KB" if size < 1048576 else f"{size // 1048576} MiB"
            out += f"| {label}, {e['connections'] if e else '?'} connections | {cell(e)} | {cell(p)} | {ratio} |\n"
    return out


def render_orphans(d):
    rows = ["| unclaimed orphans | adoption ms (median) | rows read | linked |", "|---:|---:|---:|---:|"]
    for o in d["orphans"]:
        rows.append(f"| {n(o['unclaimed_orphans'])} | {o['adoption_ms_median']:.2f} | {n(o['rows_read'])} "
                    f"| {o['linked']} |")
    return "\n".join(rows) + "\n"


def render_tls(d):
    rows = ["| configuration | req/s (median) | against plain | edge CPU µs/event | Postgres CPU µs/event | p99 ms |",
            "|---|---:|---:|---:|---:|---:|"]
    labels = {"plain": "HTTP, database without TLS", "pg-tls": "HTTP, database over TLS (verify-full)",
              "https": "HTTPS on the edge, database without TLS"}
    for name, c in d["configs"].items():
        ratio = f"{c['rps_vs_plain']:.2f}×" if "rps_vs_plain" in c else "1"
        rows.append(f"| {labels.get(name, name)} | {n(c['rps'])} | {ratio} | {c['edge_cpu_us']:.1f} "
                    f"| {c['pg_cpu_us']:.1f} | {c['p99_ms']:.2f} |")
    return "\n".join(rows) + f"\n\nMedians of {d['rounds']} rounds; the ratio is taken within each round.\n"


def render_notify(d):
    ing = d["ingestion"]
    rows = ["| edge | req/s (median) | edge CPU µs/event | Postgres CPU µs/event | p99 ms | req/s, each round |",
            "|---|---:|---:|---:|---:|---|"]
    for name, label in (("without-outbox", "without the outbox (the revision before it)"),
                        ("with-outbox", "with the outbox")):
        c = ing[name]
        each = ", ".join(n(x) for x in c["rps_each"])
        rows.append(f"| {label} | {n(c['rps'])} | {c['edge_cpu_us']:.1f} | {c['pg_cpu_us']:.1f} "
                    f"| {c['p99_ms']:.2f} | {each} |")
    ratio = d["with_over_without"]
    dl, lat = d["delivery"], d["commit_to_2xx"]
    return ("\n".join(rows) + "\n\n"
            f"With the outbox: **{ratio:.2f}×** the events per second without (median of {d['rounds']} "
            f"rounds' ratios; goal ≥ 0.90: {met(ratio >= 0.90)}).\n\n"
            f"| delivery | figure |\n|---|---:|\n"
            f"| {n(dl['notifications'])} notifications from a standing start, to a healthy app | "
            f"{n(dl['per_second'])} per second ({dl['ms'] / 1000:.1f} s) |\n"
            f"| COMMIT to the app's 2xx, webhooks arriving at 8 connections ({n(lat['n'])} notifications) | "
            f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms |\n")


COMMANDS = {"edge": "scripts/bench/edge.sh", "latency": "scripts/bench/latency.sh",
            "latency-tmpfs": "BENCH_PG_TMPFS=1 scripts/bench/latency.sh",
            "proxy": "scripts/bench/proxy.sh", "reconciler": "scripts/bench/reconciler.sh",
            "attack": "scripts/bench/attack.sh", "orphans": "cargo run --release -p tools --bin orphanbench",
            "tls": "scripts/bench/tls.sh", "notify": "scripts/bench/notify.sh"}


def markers(name):
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def check(doc):
    bad = []
    for name in SECTIONS:
        start, end = markers(name)
        if doc.count(start) != 1 or doc.count(end) != 1 or doc.index(start) > doc.index(end):
            bad.append(name)
    return bad


def main():
    # An unknown flag (`--help` included) is not "no section named": that would rewrite them all.
    flags = [a for a in sys.argv[1:] if a.startswith("-")]
    if any(f not in ("--check", "--sections") for f in flags):
        print(__doc__.strip())
        sys.exit(0 if flags in (["--help"], ["-h"]) else 2)
    if "--sections" in sys.argv[1:]:
        print(" ".join(SECTIONS))
        return
    doc = open(DOC).read()
    bad = check(doc)
    if bad:
        sys.exit(f"docs/performance.md: the markers of {', '.join(bad)} are missing, repeated or out of order")
    if "--check" in sys.argv[1:]:
        print(f"docs/performance.md: the {len(SECTIONS)} benchmark sections are marked")
        return
    names = [a for a in sys.argv[1:] if not a.startswith("--")] or SECTIONS
    unknown = set(names) - set(SECTIONS)
    if unknown:
        sys.exit(f"unknown sections: {', '.join(sorted(unknown))} (known: {', '.join(SECTIONS)})")
    for name in names:
        path = os.path.join(BENCH, f"{name}.json")
        if not os.path.exists(path):
            print(f"  {name}: no {path}, left as it is")
            continue
        body = globals()[f"render_{name.replace('-', '_')}"](json.load(open(path)))
        start, end = markers(name)
        block = f"{start}\n{header(path, COMMANDS[name])}\n{body}{end}"
        doc = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
        print(f"  {name}: rewritten from {path}")
    open(DOC, "w").write(doc)
    for name in ("latency", "latency-tmpfs"):
        svg = os.path.join(BENCH, f"{name}.svg")
        if name in names and os.path.exists(svg):
            shutil.copyfile(svg, os.path.join(ROOT, "docs", f"{name}.svg"))


if __name__ == "__main__":
    main()
