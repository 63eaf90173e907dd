#!/usr/bin/env bash
# Webhook ingestion benchmark, in one run on this machine:
#   1. pgbench running the ledger's own transaction (lock order + insert event, update order),
#      prepared, at 32 clients: the Postgres ceiling for one transaction per event;
#   2. the release edge under the load generator at 8, 32 and 64 connections (unique signed
#      checkout.session.completed events for pre-created orders; the ledger is checked after).
# Prints a table and the edge/pgbench ratio, and writes target/bench/edge.json.
#
# Env: BENCH_REQUESTS (30000 per edge run), BENCH_PGBENCH_TX (1500 per pgbench client),
#      EDGE_LOG (info: the edge logs one JSON line per event, as in production),
#      BENCH_PERF=1 (profile the edge with `perf record -e cpu-clock` during the 32-connection run;
#      the report goes to target/bench/edge-perf.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

requests=${BENCH_REQUESTS:-30000}
pgbench_tx=${BENCH_PGBENCH_TX:-1500}
out=target/bench
mkdir -p "$out"
pg_bin=$(pg_bin_dir)
work=$(mktemp -d -t edge-bench-XXXXXX)
pg_owned_dir "$work"
edge_pid=
cleanup() {
  [ -n "$edge_pid" ] && kill -TERM "$edge_pid" 2>/dev/null && wait "$edge_pid" 2>/dev/null
  stop_throwaway_pg "$work"
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> building release binaries"
cargo build --release --locked -q -p edge -p tests --bin edge --bin loadgen

echo "==> starting a throwaway PostgreSQL (durable defaults: fsync and synchronous_commit on)"
start_throwaway_pg "$work"
# CPU ticks used so far by Postgres (the postmaster, its reaped children, its live children) and by
# one process.
pg_ticks() {
  local pm t c
  pm=$(head -n 1 "$work/data/postmaster.pid")
  t=$(sed 's/.*) //' "/proc/$pm/stat" | awk '{print $12+$13+$14+$15}')
  for c in $(pgrep -P "$pm"); do
    t=$((t + $(sed 's/.*) //' "/proc/$c/stat" 2>/dev/null | awk '{print $12+$13}' || echo 0)))
  done
  echo "$t"
}
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12+$13}'; }
tck=$(getconf CLK_TCK)
psql() { "$pg_bin/psql" -h "$work" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
./target/release/edge migrate >/dev/null

clients=32
python3 - "$work/ledger.sql" <<'PY'
# The pgbench script: the ledger's own two statements (from common/src/ledger.rs), with the
# parameters bound to per-client values and a real Checkout Session payload.
import json, re, sys
src = open("common/src/ledger.rs").read()
def const(name):
    return re.search(r'const %s: &str = "\\\n(.*?)";' % name, src, re.S).group(1)
def lock_and_insert():
    # concat!("...", lock_order_sql!(), "..."): the macro's literal spliced between the others.
    macro = re.search(r'macro_rules! lock_order_sql \{\s*\(\) => \{\s*"(.*?)"\s*\};', src, re.S).group(1)
    body = re.search(r'const LOCK_AND_INSERT: &str = concat!\((.*?)\n\);', src, re.S).group(1)
    parts = [macro if m.group(0).startswith("lock_order_sql") else m.group(1).replace("\\n", "\n")
             for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|lock_order_sql!\(\)', body)]
    return "".join(parts)
session = json.load(open("tests/fixtures/stripe/checkout_session.json"))
payload = json.dumps({"id": "evt_x", "object": "event", "type": "checkout.session.completed",
                      "created": 1, "livemode": False, "data": {"object": session}})
sid = "('cs_test_pgb_' || :r || '_' || :client_id || '_' || :i)"
params = {1: sid, 2: "NULL::uuid", 3: "NULL::uuid", 4: "NULL::text",
          5: "('evt_pgb_' || :r || '_' || :client_id || '_' || :i)", 6: "'checkout.session.completed'",
          7: sid, 8: "false", 9: "'2025-06-30.basil'", 10: "now()",
          11: ":payload", 12: "'webhook'", 13: "NULL::text"}
lock_and_insert = re.sub(r"\$(\d+)", lambda m: params[int(m.group(1))], lock_and_insert())
update = re.sub(r"\$(\d+)", lambda m: {1: ":id",
                                        2: "'paid'", 3: "now()", 4: "('pi_pgb_' || :r || '_' || :client_id || '_' || :i)", 5: "NULL::text"}[int(m.group(1))],
                const("UPDATE_ORDER"))
# The payload is a variable (bound per execution, like the edge's), not a literal that the
# planner would parse into jsonb once.
open(sys.argv[1] + ".payload", "w").write(payload)
with open(sys.argv[1], "w") as f:
    f.write("\\set i :i + 1\nBEGIN;\n")
    f.write(" ".join(lock_and_insert.split()) + " \\gset\n")
    f.write(" ".join(update.split()) + ";\n")
    f.write("COMMIT;\n")
PY
# One pgbench run of the ledger transaction (round $1): prints "tps:pg_us_per_tx".
pgbench_round() {
  local r=$1 out pg0 pg1 tps paid
  psql -d bench -c "INSERT INTO orders (id, stripe_session_id, amount_total, currency)
    SELECT gen_random_uuid(), 'cs_test_pgb_$r' || '_' || c || '_' || i, 2000, 'eur'
    FROM generate_series(0, $clients - 1) c, generate_series(1, $pgbench_tx) i"
  psql -d bench -c "VACUUM ANALYZE orders"
  pg0=$(pg_ticks)
  out=$("$pg_bin/pgbench" -h "$work" -U postgres -n -M prepared -c $clients -j 2 -t "$pgbench_tx" \
    -D i=0 -D r="$r" -D "payload=$(cat "$work/ledger.sql.payload")" -f "$work/ledger.sql" bench 2>&1)
  pg1=$(pg_ticks)
  tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p')
  paid=$(psql -d bench -c "SELECT count(*) FROM orders WHERE stripe_session_id LIKE 'cs_test_pgb\\_$r\\_%' AND status = 'paid'")
  if [ "$paid" != $((clients * pgbench_tx)) ]; then
    echo "pgbench did not pay every order ($paid):" >&2; echo "$out" >&2; return 1
  fi
  echo "$tps:$(( (pg1 - pg0) * 1000000 / tck / (clients * pgbench_tx) ))"
}

echo "==> edge (release, pool 32, log level ${EDGE_LOG:-info})"
secret=whsec_bench_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
port=$(free_port)
admin=$(free_port)
RUST_LOG=${EDGE_LOG:-info} EDGE_LISTEN=127.0.0.1:$port EDGE_ADMIN_LISTEN=127.0.0.1:$admin \
  STRIPE_WEBHOOK_SECRET=$secret DATABASE_POOL_SIZE=32 ./target/release/edge serve >"$work/edge.log" 2>&1 &
edge_pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$admin/ready" >/dev/null 2>&1 && break; sleep 0.1; done

# One edge run under the load generator: writes $work/<label>.json with the CPU split added.
edge_round() {
  local c=$1 label=$2 pg0 e0 pg1 e1 perf_pid=
  pg0=$(pg_ticks); e0=$(proc_ticks "$edge_pid")
  if [ "${BENCH_PERF:-}" = 1 ] && [ "$label" = r1_c32 ]; then
    perf record -q -e cpu-clock -F 2000 -g -p "$edge_pid" -o "$work/perf.data" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  ./target/release/loadgen --addr 127.0.0.1:$port --secret "$secret" --database-url "$DATABASE_URL" \
    --connections "$c" --requests "$requests" --label "$label" --json "$work/$label.json" | sed 's/^/    /'
  pg1=$(pg_ticks); e1=$(proc_ticks "$edge_pid")
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
    perf report -i "$work/perf.data" --no-children --percent-limit 1.5 --stdio -g none 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | head -60 > "$out/edge-perf.txt"
    perf report -i "$work/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | head -12 >> "$out/edge-perf.txt"
    echo "    perf profile of the edge: $out/edge-perf.txt"
  fi
  python3 - "$work/$label.json" "$(( (e1 - e0) * 1000000 / tck / requests ))" "$(( (pg1 - pg0) * 1000000 / tck / requests ))" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); r["edge_cpu_us_per_req"] = int(sys.argv[2]); r["pg_cpu_us_per_req"] = int(sys.argv[3])
json.dump(r, open(sys.argv[1], "w"))
PY
}

# Alternate the two at 32 connections (this machine's neighbours make single runs noisy), then the
# edge at 8 and 64.
pgbench_runs=()
for r in 1 2 3; do
  echo "==> round $r: pgbench, 32 clients x $pgbench_tx"
  result=$(pgbench_round $r)
  echo "    pgbench ${result%%:*} tx/s, Postgres CPU ${result##*:} us/tx"
  pgbench_runs+=("$result")
  echo "==> round $r: edge, 32 connections"
  edge_round 32 r${r}_c32
done
for c in 8 64; do
  echo "==> edge, $c connections"
  edge_round $c c$c
done
rss_kb=$(sed -n 's/^VmHWM:\s*\([0-9]*\) kB/\1/p' /proc/$edge_pid/status)

python3 - "$rss_kb" "$out/edge.json" "${pgbench_runs[*]}" "$work" <<'PY'
import json, statistics, sys
rss_kb, dest, pgb, work = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(), sys.argv[4]
pgbench = [{"round": i + 1, "tps": float(x.split(":")[0]), "pg_cpu_us_per_tx": int(x.split(":")[1])} for i, x in enumerate(pgb)]
load = lambda label: json.load(open(f"{work}/{label}.json"))
rounds = [load(f"r{i}_c32") for i in (1, 2, 3)]
others = [load("c8"), load("c64")]
print()
print("| run | req/s | p50 ms | p99 ms | edge CPU us/req | Postgres CPU us/req | rows checked |")
print("|---|---:|---:|---:|---:|---:|---|")
for p, e in zip(pgbench, rounds):
    print(f"| round {p['round']}: pgbench, ledger transaction, 32 clients | {p['tps']:,.0f} | | | | {p['pg_cpu_us_per_tx']} | every order paid |")
    print(f"| round {p['round']}: edge, 32 connections | {e['rps']:,.0f} | {e['p50_ms']:.2f} | {e['p99_ms']:.2f} | {e['edge_cpu_us_per_req']} | {e['pg_cpu_us_per_req']} | {'ok' if e['rows_checked'] else 'MISMATCH'} |")
for e in others:
    print(f"| edge, {e['connections']} connections | {e['rps']:,.0f} | {e['p50_ms']:.2f} | {e['p99_ms']:.2f} | {e['edge_cpu_us_per_req']} | {e['pg_cpu_us_per_req']} | {'ok' if e['rows_checked'] else 'MISMATCH'} |")
pg_median = statistics.median(p["tps"] for p in pgbench)
edge_median = statistics.median(e["rps"] for e in rounds)
ratios = [e["rps"] / p["tps"] for p, e in zip(pgbench, rounds)]
print()
print(f"edge / pgbench at 32 connections: {edge_median / pg_median:.2f} (medians; per round {', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.90)")
print(f"edge peak RSS: {rss_kb / 1024:.1f} MB (target < 50 MB)")
json.dump({"pgbench_32": pgbench, "edge_32": rounds, "edge_other": others,
           "ratio_32_medians": edge_median / pg_median, "ratios_32_per_round": ratios,
           "edge_peak_rss_mb": rss_kb / 1024}, open(dest, "w"), indent=2)
print(f"written: {dest}")
PY
