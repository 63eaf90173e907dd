#!/usr/bin/env bash
# What order notifications cost and how fast they go, in one run on this machine:
#   1. ingestion with the outbox against without: the release edge of this tree and the edge of
#      the revision before the outbox (built from git into target/bench-baseline; it runs on the
#      same V6 schema, which keeps older builds compatible), alternating in rounds (ABBA) under the
#      load generator (32 connections, unique signed events); each ratio taken within a round;
#   2. delivery throughput: the notifications of those runs (every one an order.paid) delivered by
#      `reconciler run` to the example shop (shop-app, healthy), from a standing start;
#   3. latency from COMMIT to the app's 2xx while webhooks arrive: the load generator at 8
#      connections with the reconciler delivering as they commit; per notification, from the
#      outbox row's creation (its transaction) to the recorded 2xx, first attempts only.
# Prints the figures and writes target/bench/notify.json.
#
# Env: BENCH_REQUESTS (20000 per ingestion run), BENCH_ROUNDS (4), BENCH_LIVE_REQUESTS (5000),
#      BENCH_BASELINE (the revision without the outbox; default: the parent of the commit that
#      added it).
. "$(dirname "$0")/../lib.sh"
export STRIPE_EXPECT_LIVEMODE=false LOG_FORMAT=json
requests=${BENCH_REQUESTS:-20000}
rounds=${BENCH_ROUNDS:-4}
live_requests=${BENCH_LIVE_REQUESTS:-5000}
out=target/bench
mkdir -p "$out"
secret=whsec_notify_bench_0123456789
notify_secret=notify_bench_secret_0123456789abcdef01

baseline=${BENCH_BASELINE:-$(git log --format=%H -1 --grep='^Transactional outbox')^}
echo "==> building release binaries (this tree, and the edge of $(git rev-parse --short "$baseline"))"
cargo build --release --locked -q -p edge -p reconciler -p sim -p tools --bin edge --bin reconciler \
  --bin shop-app --bin loadgen
use_scratch_dir edge-notify-bench
git worktree add -q --detach "$work/baseline" "$baseline"
trap 'git worktree remove --force "$work/baseline" 2>/dev/null; scratch_cleanup' EXIT
root=$(pwd)
(cd "$work/baseline" && CARGO_TARGET_DIR=$root/target/bench-baseline \
  cargo build --release --locked -q -p edge --bin edge)
baseline_edge=$root/target/bench-baseline/release/edge
[ -x "$baseline_edge" ] || { echo "the baseline edge did not build" >&2; exit 1; }

start_throwaway_pg "$work"
warm_wal "$work"
export DATABASE_URL="postgres://postgres@/bench?host=$work"
psql_q() { "$(pg_bin_dir)/psql" -h "$work" -U postgres -d bench -qAt -v ON_ERROR_STOP=1 -c "$1"; }
./target/release/edge migrate >/dev/null
pm=$(head -n 1 "$work/data/postmaster.pid")

# ingest NAME BINARY ROUND CONNECTIONS REQUESTS: one loadgen run against an edge.
ingest() {
  local name=$1 bin=$2 round=$3 conns=$4 n=$5 port admin pid
  port=$(free_port); admin=$(free_port)
  EDGE_LISTEN=127.0.0.1:$port EDGE_ADMIN_LISTEN=127.0.0.1:$admin STRIPE_WEBHOOK_SECRET=$secret \
    "$bin" serve >"$work/edge-$name.log" 2>&1 &
  pid=$!
  scratch_pids+=("$pid")
  wait_for_url "http://127.0.0.1:$admin/ready"
  ./target/release/loadgen --addr "127.0.0.1:$port" --secret "$secret" --connections "$conns" \
    --requests "$n" --label "${name//-/_}_$round" --app-pid "$pid" --postmaster-pid "$pm" \
    --json "$work/$name-$round.json" | tail -n 1
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

# Alternating which goes first (ABBA): the tables grow run after run, and a fixed order would
# favour the first.
for round in $(seq 1 "$rounds"); do
  echo "==> ingestion, round $round"
  if [ $((round % 2)) = 1 ]; then
    ingest without-outbox "$baseline_edge" "$round" 32 "$requests"
    ingest with-outbox ./target/release/edge "$round" 32 "$requests"
  else
    ingest with-outbox ./target/release/edge "$round" 32 "$requests"
    ingest without-outbox "$baseline_edge" "$round" 32 "$requests"
  fi
done
pending=$(psql_q "SELECT count(*) FROM order_transitions WHERE delivered_at IS NULL")

# The shop and a reconciler delivering to it.
shop_port=$(free_port)
APP_NOTIFY_SECRET=$notify_secret ./target/release/shop-app --port "$shop_port" >"$work/shop.log" 2>&1 &
scratch_pids+=($!)
for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$shop_port") 2>/dev/null && break; sleep 0.1; done
radmin=$(free_port)
echo "==> delivering $pending notifications to the shop from a standing start"
started=$(date +%s%N)
APP_NOTIFY_URL=http://127.0.0.1:$shop_port/n APP_NOTIFY_SECRET=$notify_secret \
  RECONCILER_ADMIN_LISTEN=127.0.0.1:$radmin RECONCILE_SCHEDULE="0 0 0 1 1 *" \
  STRIPE_API_KEY=sk_test_unused STRIPE_API_BASE=http://127.0.0.1:9 \
  ./target/release/reconciler run >"$work/reconciler.log" 2>&1 &
rpid=$!
scratch_pids+=("$rpid")
until [ "$(psql_q "SELECT count(*) FROM order_transitions WHERE delivered_at IS NULL")" = 0 ]; do
  sleep 0.2
done
drain_ms=$(( ($(date +%s%N) - started) / 1000000 ))
echo "    delivered in $drain_ms ms"
psql_q "SELECT max(id) FROM order_transitions" >"$work/live-from"

echo "==> live: $live_requests webhooks at 8 connections, delivered as they commit"
ingest live ./target/release/edge 1 8 "$live_requests"
until [ "$(psql_q "SELECT count(*) FROM order_transitions WHERE delivered_at IS NULL")" = 0 ]; do
  sleep 0.2
done
psql_q "SELECT json_build_object(
    'n', count(*),
    'p50_ms', percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - created_at) * 1000),
    'p99_ms', percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - created_at) * 1000),
    'max_ms', max(extract(epoch FROM delivered_at - created_at) * 1000))
  FROM order_transitions WHERE id > $(cat "$work/live-from") AND attempts = 1" >"$work/live-latency.json"

python3 - "$work" "$rounds" "$pending" "$drain_ms" "$out/notify.json" <<'PY'
import json, statistics, sys
work, rounds, pending, drain_ms, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
runs = {n: [json.load(open(f"{work}/{n}-{r}.json")) for r in range(1, rounds + 1)]
        for n in ("without-outbox", "with-outbox")}
med = lambda n, k: statistics.median(r[k] for r in runs[n])
ratio = statistics.median(runs["with-outbox"][i]["rps"] / runs["without-outbox"][i]["rps"] for i in range(rounds))
live = json.load(open(f"{work}/live-latency.json"))
result = {
    "rounds": rounds,
    "ingestion": {n: {"rps": med(n, "rps"), "edge_cpu_us": med(n, "app_cpu_us_per_req"),
                      "pg_cpu_us": med(n, "pg_cpu_us_per_req"), "p99_ms": med(n, "p99_ms"),
                      "rps_each": [r["rps"] for r in runs[n]]} for n in runs},
    "with_over_without": ratio,
    "delivery": {"notifications": pending, "ms": drain_ms, "per_second": pending * 1000 / max(drain_ms, 1)},
    "commit_to_2xx": live,
}
for n, c in result["ingestion"].items():
    print(f"{n:15} {c['rps']:7.0f} req/s  edge {c['edge_cpu_us']:5.1f} us/event  postgres {c['pg_cpu_us']:5.1f} us/event  p99 {c['p99_ms']:.2f} ms")
print(f"with the outbox: {ratio:.2f}x the events/s without (goal: at least 0.90)")
d = result["delivery"]
print(f"delivery: {d['notifications']} notifications in {d['ms']} ms = {d['per_second']:.0f}/s")
print(f"COMMIT to the app's 2xx under load: p50 {live['p50_ms']:.1f} ms, p99 {live['p99_ms']:.1f} ms, max {live['max_ms']:.1f} ms ({live['n']} notifications)")
json.dump(result, open(out, "w"), indent=2)
PY
