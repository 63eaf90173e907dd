#!/usr/bin/env bash
# The edge and the reconciler through PgBouncer (Debian's package, its default settings but the
# pool mode), in front of a throwaway PostgreSQL:
#   session mode      `edge migrate`, `edge serve` taking 400 signed webhooks from 16 connections
#                     (group commit; the ledger checked), `reconciler once` backfilling missing
#                     events, two passes started at once (one runs, the other is skipped: the pass
#                     lock holds through the pooler), `reconciler inspect`;
#   transaction mode  every binary refuses to start (exit 78), naming what needs session mode.
. "$(dirname "$0")/../lib.sh"
need_commands pgbouncer:pgbouncer
export STRIPE_EXPECT_LIVEMODE=false RECONCILE_SETTLE=0s LOG_FORMAT=json

echo "==> building the binaries"
cargo build --locked -q -p edge -p reconciler -p sim -p tools --bin edge --bin reconciler \
  --bin stripe-sim --bin loadgen
use_scratch_dir edge-pgbouncer
trap 'bouncer_stop; scratch_cleanup' EXIT
start_throwaway_pg "$work"
bouncer_port=$(free_port)

# Stops the PgBouncer started last, if any, and waits until its port is free.
bouncer_stop() {
  [ -f "$work/pgbouncer.pid" ] || return 0
  kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null || true
  for _ in $(seq 1 100); do
    (echo >"/dev/tcp/127.0.0.1/$bouncer_port") 2>/dev/null || { rm -f "$work/pgbouncer.pid"; return 0; }
    sleep 0.1
  done
  echo "PgBouncer did not stop" >&2
  return 1
}

# Starts PgBouncer in pool mode $1 (as the postgres user: it refuses to run as root), daemonised
# with a pid file, logging to its file only.
bouncer() {
  bouncer_stop
  cat >"$work/pgbouncer.ini" <<INI
[databases]
bench = host=$work dbname=bench user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $work/userlist.txt
pool_mode = $1
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
INI
  printf '"postgres" ""\n' >"$work/userlist.txt"
  pg_owned_dir "$work"
  as_pg pgbouncer -q -d "$work/pgbouncer.ini"
  for _ in $(seq 1 100); do
    (echo >"/dev/tcp/127.0.0.1/$bouncer_port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "PgBouncer did not start: $(tail -5 "$work/pgbouncer.log")" >&2
  return 1
}

export DATABASE_URL="postgres://postgres@127.0.0.1:$bouncer_port/bench?sslmode=disable"

echo "==> session mode"
bouncer session
./target/debug/edge migrate
port=$(free_port); admin=$(free_port); sim_port=$(free_port)
secret=whsec_pgbouncer_check
EDGE_LISTEN=127.0.0.1:$port EDGE_ADMIN_LISTEN=127.0.0.1:$admin STRIPE_WEBHOOK_SECRET=$secret \
  ./target/debug/edge serve >"$work/edge.log" 2>&1 &
edge_pid=$!
scratch_pids+=("$edge_pid")
wait_for_url "http://127.0.0.1:$admin/ready"
./target/debug/loadgen --addr "127.0.0.1:$port" --secret "$secret" --connections 16 --requests 400 \
  --label bouncer
key=sk_test_pgbouncer_check
./target/debug/stripe-sim --listen "127.0.0.1:$sim_port" --api-key "$key" --synthetic 250 \
  --synthetic-prefix bouncer >"$work/sim.log" 2>&1 &
scratch_pids+=($!)
for _ in $(seq 1 100); do
  grep -q 'synthetic events created' "$work/sim.log" 2>/dev/null && break
  sleep 0.1
done
export STRIPE_API_KEY=$key STRIPE_API_BASE=http://127.0.0.1:$sim_port
./target/debug/reconciler once >"$work/once.json" 2>>"$work/reconciler.log"
python3 - "$work/once.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["status"] == "ok" and s["eventsBackfilled"] == 250, s
print(f"    reconciler once: ok, {s['eventsBackfilled']} events backfilled through the pooler")
PY
./target/debug/reconciler once >"$work/a.json" 2>>"$work/reconciler.log" &
a=$!
./target/debug/reconciler once >"$work/b.json" 2>>"$work/reconciler.log" &
b=$!
wait "$a" "$b"
python3 - "$work/a.json" "$work/b.json" <<'PY'
import json, sys
statuses = sorted(json.load(open(p))["status"] for p in sys.argv[1:])
assert statuses in (["ok", "skipped"], ["ok", "ok"]), statuses
print(f"    two passes at once: {' and '.join(statuses)} (the pass lock holds through the pooler)")
PY
./target/debug/reconciler inspect --session cs_test_bouncer_1 >"$work/inspect.txt"
grep -q '^verdict' "$work/inspect.txt"
echo "    reconciler inspect: $(grep '^verdict' "$work/inspect.txt")"
kill -TERM "$edge_pid"; wait "$edge_pid" 2>/dev/null || true

echo "==> transaction mode"
bouncer transaction
refused() {
  local name=$1 code
  shift
  set +e
  "$@" >"$work/refused.out" 2>"$work/refused.err"
  code=$?
  set -e
  if [ "$code" != 78 ] || ! grep -q "need session mode" "$work/refused.err"; then
    echo "$name: expected exit 78 naming session mode, got $code: $(cat "$work/refused.err")" >&2
    return 1
  fi
  echo "    $name: exit 78: $(grep -o 'pooler.*session mode' "$work/refused.err" | head -1)"
}
refused "edge migrate" ./target/debug/edge migrate
refused "edge serve" env EDGE_LISTEN=127.0.0.1:$port EDGE_ADMIN_LISTEN=127.0.0.1:$admin \
  STRIPE_WEBHOOK_SECRET=$secret ./target/debug/edge serve
refused "reconciler once" ./target/debug/reconciler once
bouncer_stop
echo "pgbouncer checks: ok"
