#!/usr/bin/env bash
# Webhook ingestion benchmark, in one run on this machine:
#   1. pgbench running the one-event ledger transaction (lock order + insert event, update order),
#      prepared, at 32 clients: the ceiling of one transaction per event;
#   2. the release edge (group commit) under the load generator at 8, 32 and 64 connections
#      (unique signed checkout.session.completed events for pre-created orders; the ledger is
#      checked after each run);
#   3. the Node/Express peer of tests/peer/node-express (npm ci in a temporary
#      copy, its own database and schema) under the same load generator and the same kind of events.
# The 32-connection runs alternate in rounds (this machine's speed drifts with its neighbours): each
# ratio is taken within a round and the median of the rounds' ratios is reported. The server's WAL
# is warmed first (see below). Prints a table and the ratios, writes target/bench/edge.json.
#
# Env: BENCH_REQUESTS (30000 per run), BENCH_ROUNDS (5), BENCH_PGBENCH_TX (1000 per pgbench client),
#      EDGE_LOG (info: the edge logs one JSON line per event, as in production),
#      EDGE_LEDGER_WRITERS / EDGE_BATCH_MAX (passed to the edge), PEER_DIR (the Node peer's folder;
#      the peer is skipped when node or npm is missing), BENCH_PERF=1 (profile the edge with
#      `perf record -e cpu-clock` during the first 32-connection run; report in
#      target/bench/edge-perf.txt), BENCH_CLIENT_CPUS / BENCH_SERVER_CPUS / BENCH_PG_CPUS
#      (taskset lists: see scripts/lib.sh).
# Also reports how many of the edge's order updates were HOT (pg_stat_user_tables) and Postgres's
# CPU per event.
. "$(dirname "$0")/../lib.sh"
# The load generator's events are test-mode events.
export STRIPE_EXPECT_LIVEMODE=false

requests=${BENCH_REQUESTS:-30000}
rounds=${BENCH_ROUNDS:-5}
pgbench_tx=${BENCH_PGBENCH_TX:-1000}
out=target/bench
mkdir -p "$out"
pg_bin=$(pg_bin_dir)
use_scratch_dir edge-bench
peer_pid=

echo "==> building release binaries"
print_placement
cargo build --release --locked -q -p edge -p tools --bin edge --bin loadgen --bin ledger-sql

echo "==> starting a throwaway PostgreSQL (durable defaults: fsync and synchronous_commit on)"
start_throwaway_pg "$work"
# CPU ticks used so far by Postgres (the postmaster, its reaped children, its live children), for
# the pgbench rounds (pgbench's own CPU is not counted).
pg_ticks() {
  local pm t c
  pm=$(head -n 1 "$work/data/postmaster.pid")
  t=$(sed 's/.*) //' "/proc/$pm/stat" | awk '{print $12+$13+$14+$15}')
  for c in $(pgrep -P "$pm"); do
    t=$((t + $(sed 's/.*) //' "/proc/$c/stat" 2>/dev/null | awk '{print $12+$13}' || echo 0)))
  done
  echo "$t"
}
# Postgres's child processes (its backends and auxiliary processes), counted.
pg_children() { pgrep -c -P "$(head -n 1 "$work/data/postmaster.pid")"; }
# Waits (up to 10 s) until Postgres has at most $1 child processes: a backend that is exiting is
# counted nowhere (its /proc entry is going, and its time reaches the postmaster's reaped-children
# total only once reaped), so the CPU is read only after pgbench's backends are gone.
pg_children_settle() {
  for _ in $(seq 1 200); do
    [ "$(pg_children)" -le "$1" ] && return 0
    sleep 0.05
  done
  echo "warning: Postgres still has $(pg_children) children" >&2
}
# The number of Postgres child processes once it has stopped falling (psql's backends are gone).
pg_children_steady() {
  local n prev=-1
  for _ in $(seq 1 100); do
    n=$(pg_children)
    [ "$n" = "$prev" ] && break
    prev=$n
    sleep 0.1
  done
  echo "$n"
}
tck=$(getconf CLK_TCK)
psql() { "$pg_bin/psql" -h "$work" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

echo "==> warming the server's WAL (recycled segments, as on a server that has been running)"
warm_wal "$work"
./target/release/edge migrate >/dev/null

clients=32
./target/release/ledger-sql > "$work/statements.json"
python3 - "$work/ledger.sql" "$work/statements.json" <<'PY'
# The pgbench script: the one-event path's own two statements (printed by ledger-sql), with the
# parameters bound to per-client values and a real Checkout Session payload.
import json, re, sys
sql = json.load(open(sys.argv[2]))
session = json.load(open("tests/fixtures/stripe/checkout_session.json"))
payload = json.dumps({"id": "evt_x", "object": "event", "type": "checkout.session.completed",
                      "created": 1, "livemode": False, "data": {"object": session}})
sid = "('cs_test_pgb_' || :r || '_' || :client_id || '_' || :i)"
params = {1: sid, 2: "NULL::uuid", 3: "NULL::uuid", 4: "NULL::text",
          5: "('evt_pgb_' || :r || '_' || :client_id || '_' || :i)", 6: "'checkout.session.completed'",
          7: sid, 8: "false", 9: "'2025-06-30.basil'", 10: "now()",
          11: ":payload", 12: "'webhook'", 13: "NULL::text"}
lock_and_insert = re.sub(r"\$(\d+)", lambda m: params[int(m.group(1))], sql["lock_and_insert"])
update = re.sub(r"\$(\d+)", lambda m: {1: ":id",
                                        2: "'paid'", 3: "now()", 4: "('pi_pgb_' || :r || '_' || :client_id || '_' || :i)", 5: "NULL::text",
                                        6: "true", 7: "NULL::bigint", 8: "NULL::text"}[int(m.group(1))],
                sql["update_order"])
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
  pg_idle_children=$(pg_children_steady)
  pg0=$(pg_ticks)
  out=$("${on_client_cpus[@]}" "$pg_bin/pgbench" -h "$work" -U postgres -n -M prepared -c $clients -j 2 -t "$pgbench_tx" \
    -D i=0 -D r="$r" -D "payload=$(cat "$work/ledger.sql.payload")" -f "$work/ledger.sql" bench 2>&1)
  pg_children_settle "$pg_idle_children"
  pg1=$(pg_ticks)
  tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p')
  paid=$(psql -d bench -c "SELECT count(*) FROM orders WHERE stripe_session_id LIKE 'cs_test_pgb\\_$r\\_%' AND status = 'paid'")
  if [ "$paid" != $((clients * pgbench_tx)) ]; then
    echo "pgbench did not pay every order ($paid):" >&2; echo "$out" >&2; return 1
  fi
  echo "$tps:$(( (pg1 - pg0) * 1000000 / tck / (clients * pgbench_tx) ))"
}

echo "==> edge (release, group commit, log level ${EDGE_LOG:-info})"
secret=whsec_bench_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
port=$(free_port)
admin=$(free_port)
RUST_LOG=${EDGE_LOG:-info} EDGE_LISTEN=127.0.0.1:$port EDGE_ADMIN_LISTEN=127.0.0.1:$admin \
  STRIPE_WEBHOOK_SECRET=$secret "${on_server_cpus[@]}" ./target/release/edge serve >"$work/edge.log" 2>&1 &
edge_pid=$!
scratch_pids+=("$edge_pid")
wait_for_url "http://127.0.0.1:$admin/ready"

peer_dir=${PEER_DIR:-tests/peer/node-express}
peer_port=
if command -v node >/dev/null && command -v npm >/dev/null && [ -f "$peer_dir/server.js" ]; then
  echo "==> Node peer ($peer_dir): npm ci in a temporary copy, its own database"
  cp -r "$peer_dir" "$work/peer"
  (cd "$work/peer" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
  psql -d postgres -c "CREATE DATABASE peer"
  psql -d peer -f "$work/peer/schema.sql" >/dev/null
  peer_port=$(free_port)
  PORT=$peer_port HOST=127.0.0.1 STRIPE_WEBHOOK_SECRET=$secret PG_POOL_MAX=20 \
    PGHOST=$work PGPORT=5432 PGUSER=postgres PGDATABASE=peer \
    "${on_server_cpus[@]}" node "$work/peer/server.js" >"$work/peer.log" 2>&1 &
  peer_pid=$!
  scratch_pids+=("$peer_pid")
  wait_for_url "http://127.0.0.1:$peer_port/healthz"
else
  echo "==> Node peer skipped (node, npm or $peer_dir missing)"
fi

# One load generator run against a server (edge or peer) whose process is $2: writes
# $work/<label>.json, with the CPU the server, Postgres and the load generator used while the
# clock ran (measured by the load generator from /proc).
load_round() {
  local server=$1 pid=$2 c=$3 label=$4 perf_pid= args
  if [ "$server" = edge ]; then
    args=(--addr 127.0.0.1:$port --database-url "$DATABASE_URL")
  else
    args=(--addr 127.0.0.1:$peer_port --database-url "host=$work user=postgres dbname=peer" --path /webhook --schema peer)
  fi
  if [ "${BENCH_PERF:-}" = 1 ] && [ "$label" = edge_r1_c32 ]; then
    perf record -q -e cpu-clock -F 2000 -g -p "$pid" -o "$work/perf.data" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  "${on_client_cpus[@]}" ./target/release/loadgen "${args[@]}" --secret "$secret" --app-pid "$pid" \
    --postmaster-pid "$(head -n 1 "$work/data/postmaster.pid")" \
    --connections "$c" --requests "$requests" --label "$label" --json "$work/$label.json" | sed 's/^/    /'
  if [ -n "$perf_pid" ]; then
    perf_stop_and_report "$perf_pid" "$work/perf.data" "$out/edge-perf.txt" 1.5
    echo "    perf profile of the edge: $out/edge-perf.txt"
  fi
  python3 - "$work/$label.json" "$server" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); r["server"] = sys.argv[2]
json.dump(r, open(sys.argv[1], "w"))
PY
}

# The order updates Postgres has counted (all, HOT), once its backends have published their
# counters (they do within a second of going idle): "upd hot".
order_updates() {
  local now last=
  for _ in $(seq 1 30); do
    now=$(psql -d bench -c "SELECT n_tup_upd || ' ' || n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'orders'")
    [ "$now" = "$last" ] && break
    last=$now
    sleep 0.5
  done
  echo "$now"
}
# HOT order updates during the edge's runs (the edge's own updates only: pgbench runs between).
hot_upd=0 all_upd=0
edge_round() {
  local before after
  before=$(order_updates)
  load_round edge "$edge_pid" "$1" "$2"
  after=$(order_updates)
  set -- $before $after
  all_upd=$((all_upd + $3 - $1)); hot_upd=$((hot_upd + $4 - $2))
}

# One pgbench run first, not counted (a warm-up, as the edge and the peer get from their start-up
# probes): in the three runs of 2026-12-01 the first pgbench run on the new database ran at half
# the speed of the next ones (1.8–2.1k tx/s against 3.4–4.4k, its Postgres CPU per transaction
# doubled), which no edge or Node run showed.
echo "==> pgbench warm-up (not counted)"
pgbench_round 0 >/dev/null
pgbench_runs=()
for r in $(seq 1 "$rounds"); do
  echo "==> round $r: pgbench, 32 clients x $pgbench_tx"
  result=$(pgbench_round $r)
  echo "    pgbench ${result%%:*} tx/s, Postgres CPU ${result##*:} us/tx"
  pgbench_runs+=("$result")
  echo "==> round $r: edge, 32 connections"
  edge_round 32 edge_r${r}_c32
  if [ -n "$peer_pid" ]; then
    echo "==> round $r: Node peer, 32 connections"
    load_round peer "$peer_pid" 32 peer_r${r}_c32
  fi
done
for c in 8 64; do
  echo "==> edge, $c connections"
  edge_round $c edge_c$c
  if [ -n "$peer_pid" ]; then
    echo "==> Node peer, $c connections"
    load_round peer "$peer_pid" $c peer_c$c
  fi
done
rss_kb=$(sed -n 's/^VmHWM:\s*\([0-9]*\) kB/\1/p' /proc/$edge_pid/status)
peer_rss_kb=0
[ -n "$peer_pid" ] && peer_rss_kb=$(sed -n 's/^VmHWM:\s*\([0-9]*\) kB/\1/p' /proc/$peer_pid/status)
batches=$(curl -fsS "http://127.0.0.1:$admin/metrics" | sed -n 's/^edge_ledger_batch_events_\(sum\|count\) \(.*\)/\1=\2/p' | tr '\n' ' ')

python3 - "$rss_kb" "$peer_rss_kb" "$out/edge.json" "${pgbench_runs[*]}" "$work" "$batches" "$rounds" "$all_upd" "$hot_upd" <<'PY'
import json, os, statistics, sys
rss_kb, peer_rss_kb, dest, pgb, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4].split(), sys.argv[5]
batches = dict(kv.split("=") for kv in sys.argv[6].split())
mean_batch = float(batches.get("sum", 0)) / max(float(batches.get("count", 1)), 1.0)
pgbench = [{"round": i + 1, "tps": float(x.split(":")[0]), "pg_cpu_us_per_tx": int(x.split(":")[1])} for i, x in enumerate(pgb)]
def load(label):
    path = f"{work}/{label}.json"
    return json.load(open(path)) if os.path.exists(path) else None
rounds = range(1, int(sys.argv[7]) + 1)
edge_rounds = [load(f"edge_r{i}_c32") for i in rounds]
peer_rounds = [r for r in (load(f"peer_r{i}_c32") for i in rounds) if r]
others = [r for r in (load(l) for l in ("edge_c8", "edge_c64", "peer_c8", "peer_c64")) if r]
name = {"edge": "edge (group commit)", "peer": "Node/Express peer"}
def row(label, r):
    check = "ok" if r["rows_checked"] else "MISMATCH"
    return (f"| {label} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['app_cpu_us_per_req']:.0f} | {r['pg_cpu_us_per_req']:.0f} | {r['loadgen_cpu_us_per_req']:.0f} | {check} |")
print()
print("| run | req/s | p50 ms | p90 ms | p99 ms | server CPU µs/req | Postgres CPU µs/req | load generator CPU µs/req | rows checked |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for i, p in enumerate(pgbench):
    print(f"| round {p['round']}: pgbench, one-event transaction, 32 clients | {p['tps']:,.0f} | | | | | {p['pg_cpu_us_per_tx']} | | every order paid |")
    print(row(f"round {p['round']}: {name['edge']}, 32 connections", edge_rounds[i]))
    if i < len(peer_rounds):
        print(row(f"round {p['round']}: {name['peer']}, 32 connections", peer_rounds[i]))
for r in others:
    print(row(f"{name[r['server']]}, {r['connections']} connections", r))
# The machine's speed drifts between rounds (the same work costs up to 1.4x more CPU time in one
# round than in another), so each ratio is taken within a round, between runs minutes apart, and
# the median of those paired ratios is the result; the ratio of the medians is shown beside it.
edge_median = statistics.median(e["rps"] for e in edge_rounds)
edge_p99 = statistics.median(e["p99_ms"] for e in edge_rounds)
result = {"pgbench_32": pgbench, "edge_32": edge_rounds, "peer_32": peer_rounds, "other": others,
          "edge_p99_ms_32": edge_p99,
          "edge_peak_rss_mb": rss_kb / 1024, "peer_peak_rss_mb": peer_rss_kb / 1024,
          "edge_mean_events_per_commit": mean_batch}
print()
def paired(key, label, rates, target):
    """The edge against `rates` (one per round): the median of the rounds' ratios, recorded in
    `result` with the rounds' ratios and the ratio of the medians, and printed."""
    ratios = [e["rps"] / rate for e, rate in zip(edge_rounds, rates)]
    of_medians = edge_median / statistics.median(rates)
    result[key], result[key + "_rounds"], result[key + "_of_medians"] = statistics.median(ratios), ratios, of_medians
    print(f"edge / {label} at 32 connections: {statistics.median(ratios):.2f} (median of the rounds' "
          f"ratios {', '.join(f'{x:.2f}' for x in ratios)}; ratio of medians {of_medians:.2f}; "
          f"target >= {target})")
paired("edge_over_pgbench_32", "pgbench ceiling", [p["tps"] for p in pgbench], 2.0)
if peer_rounds:
    paired("edge_over_peer_32", "Node peer", [p["rps"] for p in peer_rounds], 6)
edge_cpu = statistics.median(e["app_cpu_us_per_req"] for e in edge_rounds)
result["edge_cpu_us_per_event_32"] = edge_cpu
print(f"edge CPU per event at 32 connections: {edge_cpu:.0f} us (median of rounds; target <= 40)")
print(f"edge p99 at 32 connections: {edge_p99:.2f} ms (median of rounds)")
print(f"edge peak RSS: {rss_kb / 1024:.1f} MB (target < 50 MB); Node peer peak RSS: {peer_rss_kb / 1024:.1f} MB")
print(f"edge events per commit (all runs): {mean_batch:.1f} on average")
all_upd, hot_upd = int(sys.argv[8]), int(sys.argv[9])
result["orders_updates"] = {"all": all_upd, "hot": hot_upd}
print(f"order updates during the edge's runs: {all_upd}, HOT {hot_upd} ({100 * hot_upd / max(all_upd, 1):.0f} %)")
result["pg_cpu_us_per_event_32"] = statistics.median(e["pg_cpu_us_per_req"] for e in edge_rounds)
print(f"Postgres CPU per event at 32 connections: {result['pg_cpu_us_per_event_32']:.0f} us (median of rounds)")
json.dump(result, open(dest, "w"), indent=2)
print(f"written: {dest}")
PY
