#!/usr/bin/env bash
# Reconciler benchmark: a window of N checkout events on the Stripe simulator, 1 % of them missing
# from the ledger, reconciled by one `reconciler once` (release, its own process) for N = 10,000 and
# 100,000 (and 1,000,000 with BENCH_SIZES="1000000"). Prints events/s, Stripe requests (expected: ceil(N/100)) and the reconciler's peak RSS,
# checks the counts, and writes target/bench/reconciler.json.
#
# Env: BENCH_SIZES ("10000 100000"), BENCH_MAX_RPS (1000: unthrottled, to show the reconciler's own
#      capacity; Stripe allows 100).
. "$(dirname "$0")/../lib.sh"
# The simulator's events are test-mode events, created just before the pass: no settle window.
export STRIPE_EXPECT_LIVEMODE=false RECONCILE_SETTLE=0s

out=target/bench
mkdir -p "$out"
use_scratch_dir edge-reconciler-bench

echo "==> building release binaries"
cargo build --release --locked -q -p edge -p reconciler -p sim --bin edge --bin reconciler --bin stripe-sim
echo "==> starting a throwaway PostgreSQL"
start_throwaway_pg "$work"
pg_bin=$(pg_bin_dir)
psql() { "$pg_bin/psql" -h "$work" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
key=sk_test_bench_reconciler
results=()
for n in ${BENCH_SIZES:-10000 100000}; do
  echo "==> window of $n events, 1 % missing from the ledger"
  psql -c "DROP DATABASE IF EXISTS bench" postgres
  psql -c "CREATE DATABASE bench" postgres
  ./target/release/edge migrate >/dev/null
  psql -d bench -c "INSERT INTO orders (id, stripe_session_id, amount_total, currency, status, stripe_payment_intent_id)
    SELECT gen_random_uuid(), 'cs_test_bench_' || g, 2000, 'eur',
           CASE WHEN g % 100 = 0 THEN 'pending' ELSE 'paid' END, 'pi_bench_' || g
    FROM generate_series(1, $n) g"
  psql -d bench -c "INSERT INTO payment_events (stripe_event_id, event_type, stripe_object_id, stripe_session_id,
      order_id, livemode, stripe_created_at, payload, source)
    SELECT 'evt_bench_' || g, 'checkout.session.completed', o.stripe_session_id, o.stripe_session_id,
           o.id, false, now(), '{}', 'webhook'
    FROM generate_series(1, $n) g JOIN orders o ON o.stripe_session_id = 'cs_test_bench_' || g
    WHERE g % 100 <> 0"
  psql -d bench -c "VACUUM ANALYZE"
  port=$(free_port)
  ./target/release/stripe-sim --listen 127.0.0.1:$port --api-key $key --synthetic "$n" 2>"$work/sim.log" &
  sim_pid=$!
  scratch_pids+=("$sim_pid")
  # It prints "listening" once every synthetic event exists (1M take about a minute): a pass that
  # started earlier would list a window still being filled.
  for _ in $(seq 1 6000); do grep -q listening "$work/sim.log" 2>/dev/null && break; sleep 0.1; done
  grep -q listening "$work/sim.log" || { echo "the simulator did not finish creating its events" >&2; exit 1; }
  started=$(date +%s%N)
  # The synthetic events are one a second, ending now: the window must reach back over all of them.
  DATABASE_URL="host=$work user=postgres dbname=bench" STRIPE_API_KEY=$key RECONCILE_LOOKBACK="$((n / 3600 + 2))h" \
    STRIPE_API_BASE=http://127.0.0.1:$port STRIPE_MAX_RPS=${BENCH_MAX_RPS:-1000} RUST_LOG=warn \
    /usr/bin/time -v ./target/release/reconciler once >"$work/summary.json" 2>"$work/time.txt"
  elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))
  rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.txt")
  kill -TERM "$sim_pid"; wait "$sim_pid" 2>/dev/null || true
  paid=$(psql -d bench -c "SELECT count(*) FROM orders WHERE status = 'paid'")
  python3 - "$work/summary.json" "$n" "$elapsed_ms" "$rss_kb" "$paid" "$work/result_$n.json" <<'PY'
import json, math, sys
s = json.load(open(sys.argv[1])); n, ms, rss, paid = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ok = (s["status"] == "ok" and s["eventsSeen"] == n and s["eventsMissing"] == n // 100
      and s["eventsBackfilled"] == n // 100 and paid == n)
r = {"events": n, "missing": s["eventsMissing"], "backfilled": s["eventsBackfilled"], "seconds": ms / 1000,
     "events_per_s": n / (ms / 1000), "stripe_requests": s["stripeRequests"],
     "expected_requests": math.ceil(n / 100), "peak_rss_mb": rss / 1024, "orders_paid": paid, "checked": ok}
print(f"    {n} events in {ms / 1000:.2f} s = {r['events_per_s']:,.0f} events/s; Stripe requests {s['stripeRequests']} "
      f"(ceil(n/100) = {r['expected_requests']}); peak RSS {rss / 1024:.1f} MB; "
      f"{s['eventsBackfilled']} backfilled; every order paid: {paid == n}; {'ok' if ok else 'MISMATCH'}")
json.dump(r, open(sys.argv[6], "w"))
if not ok:
    print("    the pass's summary: " + json.dumps(s))
sys.exit(0 if ok else 1)
PY
  results+=("$work/result_$n.json")
done
python3 - "$out/reconciler.json" "${results[@]}" <<'PY'
import json, sys
runs = [json.load(open(f)) for f in sys.argv[2:]]
print()
print("| window | missing | seconds | events/s | Stripe requests | peak RSS |")
print("|---:|---:|---:|---:|---:|---:|")
for r in runs:
    print(f"| {r['events']:,} | {r['missing']:,} | {r['seconds']:.2f} | {r['events_per_s']:,.0f} | {r['stripe_requests']} (= ceil(n/100): {r['stripe_requests'] == r['expected_requests']}) | {r['peak_rss_mb']:.1f} MB |")
json.dump(runs, open(sys.argv[1], "w"), indent=2)
print(f"written: {sys.argv[1]}")
PY
