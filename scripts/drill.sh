#!/usr/bin/env bash
# Drills on the production topology under load (scripts/cluster/topology.sh: a Postgres primary and a
# streaming standby, HAProxy in front of three edges, two reconcilers, the Stripe simulator,
# Prometheus). A Stripe-like client (tests/tools/src/bin/drill.rs) sends unique signed events for
# existing orders through HAProxy, retrying every non-2xx and connection error with backoff until a
# 2xx, while, mid-load:
#   1. rolling upgrade: each edge in turn gets SIGTERM, drains, and a new process takes its place;
#   2. an additive migration is applied while the edges serve;
#   3. one edge is killed (kill -9) and later restarted;
#   4. the reconciler holding the pass lock is killed mid-pass: the other completes the next pass;
#   5. database failover: the standby is cut off the primary's WAL for a second (what the primary
#      acknowledges then is lost with it, as asynchronous replication can), then the primary is
#      stopped (immediate) and the standby promoted; the edges find it through their multi-host
#      DATABASE_URL, and the reconcilers backfill every acknowledged event the new primary lacks.
# After each, the ledger is compared with the simulator's events and every order with Stripe's
# view. Writes target/drill/drill.json (one object per drill) and prints a table.
#
# Env: DRILL_RATE (events a second, 100), DRILL_SECONDS (load per drill, 20); CI runs
# DRILL_SECONDS=8.
. "$(dirname "$0")/lib.sh"
. scripts/cluster/topology.sh

rate=${DRILL_RATE:-100}
seconds=${DRILL_SECONDS:-20}
count=$((rate * seconds))
out=target/drill
mkdir -p "$out"
: >"$out/drill.jsonl"

echo "==> building (release)"
cargo build --release --locked -q -p edge -p reconciler -p sim -p tools --bin edge --bin reconciler --bin stripe-sim --bin drill
use_scratch_dir edge-drill
cleanup() { topo_stop; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
topo_start

export STRIPE_API_KEY=$topo_key STRIPE_WEBHOOK_SECRET=$topo_secret
drill() { ./target/release/drill "$@"; }
psql_primary() { "$topo_pg_bin/psql" "$topo_db_url" -qAt -v ON_ERROR_STOP=1 -c "$1"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(round(float(sys.argv[1]) - float(sys.argv[2]), 2))" "$(now)" "$1"; }

for prefix in roll migrate crash failover; do
  drill prepare --database-url "$topo_db_url" --prefix "$prefix" --count "$count"
done
topo_standby_caught_up

# Starts the load for PREFIX in the background; its JSON goes to $work/load-PREFIX.json.
start_load() {
  load_started=$(now)
  drill load --target "127.0.0.1:$lb_port" --sim "http://127.0.0.1:$sim_port" --prefix "$1" \
    --count "$count" --rate "$rate" >"$work/load-$1.json" &
  load_pid=$!
}

# Waits for the load, checks the ledger (right away, then until whole or WAIT seconds), records.
finish() {
  local name=$1 prefix=$2 wait=$3 extra=$4
  wait "$load_pid"
  local at_end whole
  at_end=$(drill check --database-url "$topo_db_url" --sim "http://127.0.0.1:$sim_port" --prefix "$prefix")
  whole=$(drill check --database-url "$topo_db_url" --sim "http://127.0.0.1:$sim_port" --prefix "$prefix" --wait-secs "$wait")
  echo "{\"drill\":\"$name\",\"load\":$(cat "$work/load-$prefix.json"),\"after_load\":$at_end,\"final\":$whole,$extra}" \
    | tee -a "$out/drill.jsonl"
}

# Rest mid-load: the action starts once the load has run this long.
mid() { sleep "$(python3 -c "print($seconds / 4)")"; }

echo "==> drill 1: rolling upgrade"
start_load roll
mid
roll_started=$(now)
for i in $(seq 1 "$topo_edges"); do
  topo_stop_edge "$i"
  topo_start_edge "$i"
  topo_lb_sees "$i" UP
done
finish rolling-upgrade roll 60 "\"action_s\":$(since "$roll_started")"

echo "==> drill 2: an additive migration while the edges serve"
start_load migrate
mid
migration_started=$(now)
psql_primary "BEGIN;
  SET LOCAL lock_timeout = '5s';
  ALTER TABLE orders ADD COLUMN drill_note text NULL;
  CREATE TABLE drill_additive (id bigint PRIMARY KEY, note text);
  INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
    SELECT max(version) + 1, 'drill_additive', now()::text, '0' FROM refinery_schema_history;
  COMMIT;"
migration_s=$(since "$migration_started")
ready_all=true
for i in $(seq 1 "$topo_edges"); do
  curl -fsS "http://127.0.0.1:${edge_admins[$((i - 1))]}/ready" >/dev/null || ready_all=false
done
finish migration-mid-load migrate 60 "\"migration_s\":$migration_s,\"edges_ready_on_newer_schema\":$ready_all,\"schema_version\":$(psql_primary "SELECT max(version) FROM refinery_schema_history")"

echo "==> drill 3: kill -9 of one edge"
start_load crash
mid
kill -KILL "${edge_pids[2]}"
wait "${edge_pids[2]}" 2>/dev/null || true
crash_at=$(now)
topo_lb_sees 2 DOWN
lb_down_s=$(since "$crash_at")
mid
topo_start_edge 2
topo_lb_sees 2 UP
finish edge-crash crash 60 "\"lb_marked_down_s\":$lb_down_s"

echo "==> drill 4: the reconciler running a pass is killed"
curl -fsS -X POST -H "Authorization: Bearer $topo_key" "http://127.0.0.1:$sim_port/_sim/latency?ms=300" >/dev/null
holder=
for _ in $(seq 1 400); do
  holder=$(psql_primary "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
    WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'reconciler-%' LIMIT 1")
  [ -n "$holder" ] && break
  sleep 0.05
done
[ -n "$holder" ] || { echo "no reconciler ever held the pass lock" >&2; exit 1; }
victim=${holder#reconciler-}
killed_at_db=$(psql_primary "SELECT now()")
kill -KILL "${rec_pids[$victim]}"
wait "${rec_pids[$victim]}" 2>/dev/null || true
killed_at=$(now)
next_ok=
for _ in $(seq 1 1200); do
  next_ok=$(psql_primary "SELECT id FROM reconcile_runs WHERE scope = 'window' AND status = 'ok'
    AND started_at > '$killed_at_db'::timestamptz ORDER BY id LIMIT 1")
  [ -n "$next_ok" ] && break
  sleep 0.1
done
leader_s=$(since "$killed_at")
curl -fsS -X POST -H "Authorization: Bearer $topo_key" "http://127.0.0.1:$sim_port/_sim/latency?ms=0" >/dev/null
topo_start_reconciler "$victim"
echo "{\"drill\":\"reconciler-leader-loss\",\"killed\":\"$holder\",\"next_ok_run\":${next_ok:-null},\"seconds_until_next_ok_pass\":$leader_s}" \
  | tee -a "$out/drill.jsonl"
[ -n "$next_ok" ] || { echo "no pass completed after the leader was killed" >&2; exit 1; }

echo "==> drill 5: database failover, with the standby a second behind"
start_load failover
mid
topo_cut_replication
sleep 1
failover_at=$(now)
topo_failover
failover_s=$(since "$failover_at")
load_offset=$(python3 -c "print(round($failover_at - $load_started, 2))")
finish database-failover failover 120 "\"promote_s\":$failover_s,\"failover_at_load_s\":$load_offset,\"failover_at_unix\":$failover_at"

python3 - "$out/drill.jsonl" "$out/drill.json" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
json.dump(rows, open(sys.argv[2], "w"), indent=2)
print()
print("| drill | sent | 2xx | client-visible errors | retries | lost | doubled | orders wrong | recovered |")
print("|---|---|---|---|---|---|---|---|---|")
bad = False
for r in rows:
    if "load" not in r:
        print(f"| {r['drill']} | — | — | — | — | — | — | — | next pass ok {r['seconds_until_next_ok_pass']} s after the kill |")
        bad |= r.get("next_ok_run") is None
        continue
    l, a, f = r["load"], r["after_load"], r["final"]
    rec = []
    if l.get("last_error_s") is not None and r["drill"] == "database-failover":
        rec.append(f"webhooks ok again {round(l['last_error_s'] - r['failover_at_load_s'], 2)} s after the failover")
    if f.get("backfilled"):
        at = f.get("last_backfill_at_unix")
        since = f", the last {round(at - r['failover_at_unix'], 1)} s after the failover" if at and "failover_at_unix" in r else ""
        rec.append(f"{f['backfilled']} backfilled by the reconciler{since}")
    if f.get("whole"):
        rec.append("ledger whole")
    print(f"| {r['drill']} | {l['sent']} | {l['acknowledged']} | {l['client_errors']} | {l['retries']} | "
          f"{f.get('lost')} | {f.get('doubled')} | {f.get('orders_not_paid')} | {'; '.join(rec)} |")
    bad |= not f.get("whole") or l["given_up"] > 0
print()
sys.exit(1 if bad else 0)
PY
