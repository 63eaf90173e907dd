#!/usr/bin/env bash
# Webhook latency against offered load, measured open-loop (tests/tools/src/bin/loadgen --rate: each
# request is due at a fixed time and its latency counts from then, so stalls are not hidden by the
# client waiting). First the maximum rate (closed loop, 32 connections, the median of three runs),
# then constant-rate runs at 25, 50, 75 and 90 % of it (a pool of 64 connections). Writes
# target/bench/latency.json and the plot target/bench/latency.svg (p50, p99, p99.9 against the
# rate), and prints a table. Each open-loop run also reads the edge's own histograms before and
# after: how many group commits took Postgres over 25 ms (edge_ledger_commit_duration_seconds), and
# how many webhooks took the edge over 25 ms (edge_webhook_request_duration_seconds), and the
# spread of the p99 over the run's seconds (best, median and worst second).
#
# Env: BENCH_SECONDS (each open-loop run, 20), BENCH_REQUESTS (each closed-loop run, 30000),
#      BENCH_PG_TMPFS=1 (a diagnostic, not a deployment: Postgres's data directory on /dev/shm, so
#      that a WAL flush costs nothing and the tail left is the edge's own; writes
#      latency-tmpfs.json and latency-tmpfs.svg instead), BENCH_PG_WAL_GB (the WAL kept, 1 GB by
#      default: see warm_wal in scripts/lib.sh), BENCH_CLIENT_CPUS / BENCH_SERVER_CPUS /
#      BENCH_PG_CPUS (taskset lists: see scripts/lib.sh).
. "$(dirname "$0")/../lib.sh"
export STRIPE_EXPECT_LIVEMODE=false

seconds=${BENCH_SECONDS:-20}
requests=${BENCH_REQUESTS:-30000}
out=target/bench
mkdir -p "$out"
suffix=
if [ "${BENCH_PG_TMPFS:-}" = 1 ]; then
  export TMPDIR=/dev/shm
  suffix=-tmpfs
fi
use_scratch_dir edge-latency
echo "==> building release binaries"
cargo build --release --locked -q -p edge -p tools --bin edge --bin loadgen
print_placement
start_throwaway_pg "$work"
echo "==> warming the server's WAL"
warm_wal "$work"
./target/release/edge migrate >/dev/null

secret=whsec_latency_bench_0123456789
port=$(free_port); admin=$(free_port)
RUST_LOG=info LOG_FORMAT=json EDGE_LISTEN=127.0.0.1:$port EDGE_ADMIN_LISTEN=127.0.0.1:$admin \
  STRIPE_WEBHOOK_SECRET=$secret "${on_server_cpus[@]}" ./target/release/edge serve >"$work/edge.log" 2>&1 &
scratch_pids+=($!)
wait_for_url "http://127.0.0.1:$admin/ready"
lg() { "${on_client_cpus[@]}" ./target/release/loadgen --addr "127.0.0.1:$port" --secret "$secret" --database-url "$DATABASE_URL" "$@"; }

echo "==> maximum rate (closed loop, 32 connections, three runs)"
: >"$work/max.txt"
for r in 1 2 3; do
  lg --connections 32 --requests "$requests" --label "max$r" --json "$work/max$r.json" >/dev/null
  python3 -c "import json; print(json.load(open('$work/max$r.json'))['rps'])" >>"$work/max.txt"
done
max=$(sort -n "$work/max.txt" | sed -n 2p)
echo "    $(tr '\n' ' ' <"$work/max.txt")req/s: median $max"

for pct in 25 50 75 90; do
  rate=$(python3 -c "print(round($max * $pct / 100, 1))")
  n=$(python3 -c "print(int($rate * $seconds))")
  echo "==> $pct % of the maximum: $rate req/s for $seconds s (open loop)"
  curl -fsS "http://127.0.0.1:$admin/metrics" >"$work/metrics-before-$pct.txt"
  lg --connections 64 --requests "$n" --rate "$rate" --label "open$pct" --json "$work/open$pct.json"
  curl -fsS "http://127.0.0.1:$admin/metrics" >"$work/metrics-after-$pct.txt"
done

python3 - "$work" "$max" "$out" "$suffix" <<'PY'
import json, sys, datetime, platform, os
work, max_rps, out, suffix = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
def histogram(path, name, match=""):
    """count and cumulative buckets {le: n} of one histogram series in a scrape."""
    buckets, count = {}, 0.0
    for line in open(path):
        if line.startswith(name + "_bucket") and match in line:
            le = line.split('le="')[1].split('"')[0]
            buckets[le] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_count") and match in line:
            count = float(line.rsplit(" ", 1)[1])
    return count, buckets
def over(pct, name, le, match=""):
    """How many observations of the run were above `le` seconds, and how many in all."""
    c0, b0 = histogram(f"{work}/metrics-before-{pct}.txt", name, match)
    c1, b1 = histogram(f"{work}/metrics-after-{pct}.txt", name, match)
    return int((c1 - b1.get(le, 0)) - (c0 - b0.get(le, 0))), int(c1 - c0)
rows = []
for pct in (25, 50, 75, 90):
    r = json.load(open(f"{work}/open{pct}.json"))
    slow_commits, commits = over(pct, "edge_ledger_commit_duration_seconds", "0.025")
    slow_hooks, hooks = over(pct, "edge_webhook_request_duration_seconds", "0.025", 'outcome="processed"')
    rows.append({"percent": pct, "rate": r["target_rate"], "achieved": r["rps"], "p50_ms": r["p50_ms"],
                 "p99_ms": r["p99_ms"], "p999_ms": r["p999_ms"], "max_ms": r["max_ms"],
                 "failed": r["failed"], "rows_checked": r["rows_checked"],
                 "commits": commits, "commits_over_25ms": slow_commits,
                 "webhooks_over_25ms": slow_hooks, "webhooks": hooks})
    # The per-second p99s (by due time): a tail made of a few stalls shows as a few bad seconds,
    # a tail spread over the run as every second alike.
    per_second = sorted(s["p99_ms"] for s in r.get("timeline") or [] if s["requests"])
    if per_second:
        rows[-1]["second_p99_ms"] = {"best": per_second[0], "median": per_second[len(per_second) // 2],
                                     "worst": per_second[-1]}
result = {"date": datetime.date.today().isoformat(), "machine": f"{os.cpu_count()} cores, {platform.machine()}",
          "max_rps": max_rps, "points": rows}
result["postgres_on_tmpfs"] = suffix == "-tmpfs"
json.dump(result, open(f"{out}/latency{suffix}.json", "w"), indent=2)

# The plot: latency (ms, log scale) against the offered rate, one line per percentile.
import math
W, H, L, R, T, B = 640, 360, 60, 20, 30, 50
xs = [p["rate"] for p in rows]
ymax = max(max(p["p999_ms"] for p in rows), 10.0)
ymin = max(min(p["p50_ms"] for p in rows) / 2, 0.1)
def x(v): return L + (W - L - R) * v / (max_rps)
def y(v): return T + (H - T - B) * (1 - (math.log10(v) - math.log10(ymin)) / (math.log10(ymax * 1.5) - math.log10(ymin)))
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W/2}" y="18" text-anchor="middle">Webhook latency against offered rate (open loop; maximum {max_rps:.0f} req/s{"; Postgres on tmpfs" if suffix else ""})</text>',
       f'<line x1="{L}" y1="{H-B}" x2="{W-R}" y2="{H-B}" stroke="black"/>',
       f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H-B}" stroke="black"/>',
       f'<text x="{(L+W-R)/2}" y="{H-12}" text-anchor="middle">offered rate (req/s)</text>',
       f'<text x="14" y="{(T+H-B)/2}" text-anchor="middle" transform="rotate(-90 14 {(T+H-B)/2})">latency (ms, log)</text>']
for v in (0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000):
    if ymin <= v <= ymax * 1.5:
        svg.append(f'<line x1="{L}" y1="{y(v):.1f}" x2="{W-R}" y2="{y(v):.1f}" stroke="#ddd"/>')
        svg.append(f'<text x="{L-6}" y="{y(v)+4:.1f}" text-anchor="end">{v:g}</text>')
for p in rows:
    svg.append(f'<text x="{x(p["rate"]):.1f}" y="{H-B+16}" text-anchor="middle">{p["rate"]:.0f}</text>')
for key, color, name in (("p50_ms", "#2b8cbe", "p50"), ("p99_ms", "#e34a33", "p99"), ("p999_ms", "#756bb1", "p99.9")):
    pts = " ".join(f'{x(p["rate"]):.1f},{y(max(p[key], ymin)):.1f}' for p in rows)
    svg.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
    for p in rows:
        svg.append(f'<circle cx="{x(p["rate"]):.1f}" cy="{y(max(p[key], ymin)):.1f}" r="3" fill="{color}"/>')
for i, (color, name) in enumerate((("#2b8cbe", "p50"), ("#e34a33", "p99"), ("#756bb1", "p99.9"))):
    svg.append(f'<rect x="{L+10}" y="{T+6+i*16}" width="12" height="3" fill="{color}"/>')
    svg.append(f'<text x="{L+28}" y="{T+10+i*16}">{name}</text>')
svg.append("</svg>")
open(f"{out}/latency{suffix}.svg", "w").write("\n".join(svg) + "\n")

print(f"\nmaximum (closed loop, 32 connections): {max_rps:.0f} req/s")
print("| share of the maximum | offered req/s | achieved | p50 ms | p99 ms | p99.9 ms | max ms | p99 of the seconds: best / median / worst | commits > 25 ms | webhooks > 25 ms (edge) | ledger |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for p in rows:
    sp = p.get("second_p99_ms")
    spread = f"{sp['best']:.1f} / {sp['median']:.1f} / {sp['worst']:.1f}" if sp else "—"
    print(f"| {p['percent']} % | {p['rate']:.0f} | {p['achieved']:.0f} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | "
          f"{p['p999_ms']:.2f} | {p['max_ms']:.2f} | {spread} | {p['commits_over_25ms']} of {p['commits']} | "
          f"{p['webhooks_over_25ms']} of {p['webhooks']} | {'ok' if p['rows_checked'] and not p['failed'] else 'MISMATCH'} |")
print(f"\nwritten: {out}/latency{suffix}.json, {out}/latency{suffix}.svg")
PY
