#!/usr/bin/env bash
# The edge under attack at full scale, on loopback (release builds, the edge in its own process),
# with signed webhooks delivered meanwhile (tests/tools/src/bin/attack.rs):
#   1. 10,000 connections that send nothing; 2. 10,000 that send 16 bytes of the h2 preface;
#   3. under `ulimit -n 1024`, 1,100 idle connections while webhooks and /live are asked;
#   4. 1,500 HTTP/1 connections each trickling a 1 MiB body (in-tolerance, wrong signature);
#   5. one h2c connection with 200 such streams;
#   6. a /ready flood against webhook throughput (loadgen, 32 connections);
#   7. the bad-signature path: requests per second and edge CPU per request, 4 KB and 1 MiB
#      bodies, against the Node peer (tests/peer/node-express).
# Prints one JSON line per scenario with the edge's fds and RSS, writes target/bench/attack.json.
#
# Env: ATTACK_SCENARIOS (all: "idle preface ulimit trickle h2 ready badsig").
. "$(dirname "$0")/../lib.sh"
export STRIPE_EXPECT_LIVEMODE=false

scenarios=${ATTACK_SCENARIOS:-idle preface ulimit trickle h2 ready badsig}
out=target/bench
mkdir -p "$out"
pg_bin=$(pg_bin_dir)
echo "==> building release binaries"
cargo build --release --locked -q -p edge -p tools --bin edge --bin attack --bin loadgen
use_scratch_dir edge-attack
start_throwaway_pg "$work"
./target/release/edge migrate >/dev/null
secret=whsec_attack_bench_0123456789
results="$work/results.jsonl"
: >"$results"

edge_pid=
# Starts the edge (after `$1`, e.g. a ulimit) with its public and admin ports in $port/$admin.
start_edge() {
  port=$(free_port); admin=$(free_port)
  bash -c "$1 exec env RUST_LOG=warn EDGE_LISTEN=127.0.0.1:$port EDGE_ADMIN_LISTEN=127.0.0.1:$admin \
    STRIPE_WEBHOOK_SECRET=$secret ./target/release/edge serve" >"$work/edge-$port.log" 2>&1 &
  edge_pid=$!
  scratch_pids+=("$edge_pid")
  wait_for_url "http://127.0.0.1:$admin/ready"
}
stop_edge() { kill -TERM "$edge_pid" 2>/dev/null; wait "$edge_pid" 2>/dev/null || true; }
fds() { ls "/proc/$edge_pid/fd" 2>/dev/null | wc -l; }
rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$edge_pid/status"; }
peak_mb() { awk '/^VmHWM/ {printf "%.1f", $2/1024}' "/proc/$edge_pid/status"; }
record() { echo "$1" | tee -a "$results"; }
attack() { ./target/release/attack --addr "127.0.0.1:$port" "$@"; }
webhooks_meanwhile() { attack webhooks --secret "$secret" --every-ms 200 --seconds "$1"; }

# Scenarios 1 and 2: idle connections, closed at the header deadline (10 s).
idle_scenario() {
  local name=$1 flag=$2
  start_edge ""
  local base; base=$(fds)
  attack idle --connections 10000 $flag --wait 30 >"$work/idle.json" &
  local a=$!
  sleep 1
  local during; during=$(webhooks_meanwhile 8)
  wait "$a"
  local settled=
  for _ in $(seq 1 50); do [ "$(fds)" -le $((base + 2)) ] && { settled=1; break; }; sleep 0.2; done
  record "{\"scenario\":\"$name\",\"attack\":$(cat "$work/idle.json"),\"webhooks\":$during,\"fds_baseline\":$base,\"fds_after\":$(fds),\"fds_back\":${settled:-0},\"peak_rss_mb\":$(peak_mb)}"
  stop_edge
}

# Scenario 3: a 1,024-descriptor limit, soft and hard (the edge cannot raise it).
ulimit_scenario() {
  start_edge "ulimit -n 1024;"
  attack idle --connections 1100 --wait 30 >"$work/idle.json" &
  local a=$!
  sleep 1
  local live_ms
  live_ms=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$admin/live")
  local during; during=$(webhooks_meanwhile 15)
  wait "$a"
  record "{\"scenario\":\"ulimit-1024\",\"attack\":$(cat "$work/idle.json"),\"webhooks\":$during,\"live_s\":$live_ms,\"accept_errors\":$(curl -s "http://127.0.0.1:$admin/metrics" | awk '/^edge_accept_errors_total\{listener="public"\}/ {print $2}'),\"peak_rss_mb\":$(peak_mb)}"
  stop_edge
}

# Scenarios 4 and 5: trickled bodies against the body budget; RSS during and after.
trickle_scenario() {
  local name=$1; shift
  start_edge ""
  attack trickle "$@" >"$work/trickle.json" &
  local a=$!
  sleep 1
  local during; during=$(webhooks_meanwhile 10)
  wait "$a"
  local peak; peak=$(peak_mb)
  local back=-1
  for s in $(seq 1 30); do
    if awk -v r="$(rss_mb)" 'BEGIN {exit !(r < 64)}'; then back=$s; break; fi
    sleep 1
  done
  record "{\"scenario\":\"$name\",\"attack\":$(cat "$work/trickle.json"),\"webhooks\":$during,\"peak_rss_mb\":$peak,\"rss_after_mb\":$(rss_mb),\"under_64mb_after_s\":$back}"
  stop_edge
}

# Scenario 6: webhook throughput alone, then under a /ready flood.
ready_scenario() {
  start_edge ""
  local lg=(./target/release/loadgen --addr "127.0.0.1:$port" --secret "$secret" --database-url "$DATABASE_URL"
    --connections 32 --requests 15000)
  local alone; alone=$("${lg[@]}" --label alone --json "$work/alone.json" | sed -n 's/.* \([0-9.]*\) req\/s.*/\1/p')
  ./target/release/attack --addr "127.0.0.1:$port" ready-flood --admin "127.0.0.1:$admin" --connections 32 --seconds 12 >"$work/flood.json" &
  local f=$!
  sleep 1
  local flooded; flooded=$("${lg[@]}" --label flooded --json "$work/flooded.json" | sed -n 's/.* \([0-9.]*\) req\/s.*/\1/p')
  wait "$f"
  record "{\"scenario\":\"ready-flood\",\"webhooks_alone_per_s\":$alone,\"webhooks_flooded_per_s\":$flooded,\"flood\":$(cat "$work/flood.json")}"
  stop_edge
}

# Scenario 7: the bad-signature path, against the Node peer's.
badsig_scenario() {
  start_edge ""
  for bytes in 4096 1048576; do
    local c=32; [ "$bytes" -gt 100000 ] && c=8
    record "{\"scenario\":\"bad-signature\",\"server\":\"edge\",\"result\":$(attack bad-signature --connections $c --bytes $bytes --seconds 8 --pid "$edge_pid")}"
  done
  stop_edge
  if command -v node >/dev/null && command -v npm >/dev/null; then
    cp -r tests/peer/node-express "$work/peer"
    (cd "$work/peer" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
    "$pg_bin/psql" -h "$work" -U postgres -qAt -c "CREATE DATABASE peer" postgres
    "$pg_bin/psql" -h "$work" -U postgres -qAt -d peer -f "$work/peer/schema.sql" >/dev/null
    port=$(free_port)
    PORT=$port HOST=127.0.0.1 STRIPE_WEBHOOK_SECRET=$secret PG_POOL_MAX=20 PGHOST=$work PGPORT=5432 \
      PGUSER=postgres PGDATABASE=peer node "$work/peer/server.js" >"$work/peer.log" 2>&1 &
    local peer=$!
    scratch_pids+=("$peer")
    wait_for_url "http://127.0.0.1:$port/healthz"
    for bytes in 4096 1048576; do
      local c=32; [ "$bytes" -gt 100000 ] && c=8
      record "{\"scenario\":\"bad-signature\",\"server\":\"node\",\"result\":$(./target/release/attack --addr "127.0.0.1:$port" --path /webhook bad-signature --connections $c --bytes $bytes --seconds 8 --pid "$peer")}"
    done
    kill -TERM "$peer"; wait "$peer" 2>/dev/null || true
  fi
}

for s in $scenarios; do
  echo "==> $s"
  case $s in
    idle) idle_scenario idle-10000 "" ;;
    preface) idle_scenario h2-preface-10000 --preface ;;
    ulimit) ulimit_scenario ;;
    trickle) trickle_scenario trickle-1500x1MiB --connections 1500 --bytes 1048576 --step 4096 --every-ms 100 ;;
    h2) trickle_scenario h2c-200-streams --h2 --connections 200 --bytes 1048576 --step 4096 --every-ms 100 ;;
    ready) ready_scenario ;;
    badsig) badsig_scenario ;;
  esac
done
python3 - "$results" "$out/attack.json" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
json.dump({"scenarios": rows}, open(sys.argv[2], "w"), indent=2)
print(f"written: {sys.argv[2]}")
PY
