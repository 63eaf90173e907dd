#!/usr/bin/env bash
# Starts the whole stack locally: PostgreSQL in a project-local data dir (.dev/), the migrations,
# the edge, the Stripe simulator, the reconciler and the example shop that receives its order
# notifications. Plays a short scenario (checkouts whose webhooks are partly dropped, then a
# reconcile pass that backfills them, then the shop fulfilling every paid order) and prints a summary,
# the URLs, the dev secrets, `export` lines for the CLI and a copy-paste signed test event; then
# runs until Ctrl-C, SIGINT or SIGTERM (which stop everything it started, PostgreSQL included),
# also when it runs as a background job.
#
#   scripts/dev.sh           keep the local database from the last run
#   scripts/dev.sh --reset   start from an empty database
#
# Env: DEV_PG_PORT (54329), EDGE_LISTEN (127.0.0.1:8080), EDGE_ADMIN_LISTEN (127.0.0.1:9464),
#      DEV_SIM_LISTEN (127.0.0.1:12111), RECONCILER_ADMIN_LISTEN (127.0.0.1:9465),
#      DEV_SHOP_PORT (12112),
#      DEV_SCENARIO (60 checkouts).
set -euo pipefail
# A shell started as a background job ignores SIGINT, and bash cannot trap a signal that was ignored
# when it started: start again with SIGINT at its default, so that `kill -INT` stops the stack too.
if [ -z "${DEV_SH_SIGNALS_RESET:-}" ]; then
  export DEV_SH_SIGNALS_RESET=1
  exec python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
    bash "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"

reset=
for arg in "$@"; do
  case $arg in
    --reset) reset=1 ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
  esac
done

root=$(pwd)
dev=$root/.dev
pg_port=${DEV_PG_PORT:-54329}
export EDGE_LISTEN=${EDGE_LISTEN:-127.0.0.1:8080}
export EDGE_ADMIN_LISTEN=${EDGE_ADMIN_LISTEN:-127.0.0.1:9464}
# A development-only secret: never use it anywhere else.
export STRIPE_WEBHOOK_SECRET=${STRIPE_WEBHOOK_SECRET:-whsec_dev_local_only_0123456789abcdef}
export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/stripe_edge"
export LOG_FORMAT=${LOG_FORMAT:-json}
sim_listen=${DEV_SIM_LISTEN:-127.0.0.1:12111}
export STRIPE_API_KEY=${STRIPE_API_KEY:-sk_test_dev_local_only}
export STRIPE_API_BASE=${STRIPE_API_BASE:-http://$sim_listen}
export RECONCILER_ADMIN_LISTEN=${RECONCILER_ADMIN_LISTEN:-127.0.0.1:9465}
export RECONCILE_SCHEDULE=${RECONCILE_SCHEDULE:-"*/30 * * * * *"}
export ADMIN_TOKEN=${ADMIN_TOKEN:-dev-admin-token-local-only}
# The simulator's events are test-mode events.
export STRIPE_EXPECT_LIVEMODE=${STRIPE_EXPECT_LIVEMODE:-false}
# The demo reconciles right after the webhooks, so no settle window (production: 60 s).
export RECONCILE_SETTLE=${RECONCILE_SETTLE:-0s}
# The example shop's notification endpoint, and the development-only secret its notifications are
# signed with.
shop_port=${DEV_SHOP_PORT:-12112}
notify_url=http://127.0.0.1:$shop_port/stripe-edge/notifications
notify_secret=${APP_NOTIFY_SECRET:-dev_notify_secret_local_only_0123456789abcdef}

pg_bin=$(pg_bin_dir)
pg_owned_dir "$dev/pg"
if [ ! -f "$dev/pg/data/PG_VERSION" ]; then
  echo "==> initialising PostgreSQL in .dev/pg/data"
  as_pg "$pg_bin/initdb" -D "$dev/pg/data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
fi
if ! as_pg "$pg_bin/pg_ctl" -D "$dev/pg/data" status >/dev/null 2>&1; then
  echo "==> starting PostgreSQL on 127.0.0.1:$pg_port"
  as_pg "$pg_bin/pg_ctl" -D "$dev/pg/data" -l "$dev/pg/postgres.log" -w \
    -o "-p $pg_port -k $dev/pg -c listen_addresses=127.0.0.1" start >/dev/null
fi
if [ -n "$reset" ]; then
  echo "==> --reset: dropping the local database stripe_edge"
  "$pg_bin/dropdb" -h 127.0.0.1 -p "$pg_port" -U postgres --if-exists --force stripe_edge
fi
"$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -qAt -c "SELECT 1 FROM pg_database WHERE datname = 'stripe_edge'" postgres | grep -q 1 \
  || "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres stripe_edge

echo "==> building"
cargo build --locked -q -p edge -p reconciler -p sim --bin edge --bin reconciler --bin stripe-sim \
  --bin shop-app
echo "==> applying migrations"
./target/debug/edge migrate >"$dev/migrate.log"

pids=()
stopped=
stop() {
  [ -z "$stopped" ] || return 0
  stopped=1
  echo
  echo "==> stopping"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  as_pg "$pg_bin/pg_ctl" -D "$dev/pg/data" -m fast stop >/dev/null 2>&1 || true
  echo "==> stopped"
}
trap stop EXIT
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM

./target/debug/edge serve >"$dev/edge.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://$EDGE_ADMIN_LISTEN/ready" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "edge failed to start:"; cat "$dev/edge.log"; exit 1; }
  sleep 0.1
done

echo "==> playing a scenario: ${DEV_SCENARIO:-60} checkouts, 20 % of webhooks dropped"
./target/debug/stripe-sim --listen "$sim_listen" --scenario "${DEV_SCENARIO:-60}" >"$dev/scenario.json" 2>"$dev/stripe-sim.log" &
pids+=($!)
for _ in $(seq 1 600); do
  grep -q '"scenario":"done"' "$dev/scenario.json" 2>/dev/null && break
  kill -0 "${pids[1]}" 2>/dev/null || { echo "stripe-sim failed:"; cat "$dev/stripe-sim.log"; exit 1; }
  sleep 0.1
done
count() { "$pg_bin/psql" "$DATABASE_URL" -qAt -c "$1"; }
pending=$(count "SELECT count(*) FROM orders WHERE status = 'pending'")
echo "    $(cat "$dev/scenario.json")"
echo "    orders still pending after the webhooks: $pending"
echo "==> reconciler once"
started=$(date +%s%N)
./target/debug/reconciler once >"$dev/reconcile-once.json" 2>>"$dev/reconciler.log" || true
elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))
python3 - "$dev/reconcile-once.json" "$elapsed_ms" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"    pass {s['status']}: {s['eventsSeen']} events seen, {s['eventsMissing']} missing, "
      f"{s['eventsBackfilled']} backfilled, {s['ordersUpdated']} orders updated, "
      f"{s['stripeRequests']} Stripe requests, {sys.argv[2]} ms")
PY
echo "    orders by status now: $(count "SELECT string_agg(status || ' ' || n, ', ') FROM (SELECT status, count(*) n FROM orders GROUP BY 1 ORDER BY 1) s")"
echo "==> the shop: order notifications, one fulfilment per paid order"
APP_NOTIFY_SECRET=$notify_secret ./target/debug/shop-app --port "$shop_port" >"$dev/shop.log" 2>&1 &
pids+=($!)
# The paid orders whose notification the shop has not had yet (a kept .dev database may hold older
# orders, already fulfilled by an earlier run's shop).
paid=$(count "SELECT count(*) FROM order_transitions WHERE kind = 'order.paid' AND delivered_at IS NULL AND dead_at IS NULL")
APP_NOTIFY_URL=$notify_url APP_NOTIFY_SECRET=$notify_secret \
  ./target/debug/reconciler run >>"$dev/reconciler.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  [ "$(grep -c 'fulfilled order' "$dev/shop.log" 2>/dev/null || true)" -ge "$paid" ] && break
  sleep 0.1
done
echo "    $(grep -c 'fulfilled order' "$dev/shop.log" || true) of the $paid newly paid orders fulfilled by the shop (.dev/shop.log)"

cat <<EOT

  Stripe edge is running.

  webhook      http://$EDGE_LISTEN/stripe/webhook
  metrics      http://$EDGE_ADMIN_LISTEN/metrics    (also /live, /ready)
  database     $DATABASE_URL
  dev secret   $STRIPE_WEBHOOK_SECRET
  logs         .dev/edge.log, .dev/reconciler.log (JSON, one line per event)
  stripe sim   $STRIPE_API_BASE  (key $STRIPE_API_KEY)
  reconciler   every 30 s; admin http://$RECONCILER_ADMIN_LISTEN (/metrics, /ready)
  shop         $notify_url  (secret $notify_secret; "fulfilled order …" in .dev/shop.log)
  support      http://$RECONCILER_ADMIN_LISTEN/support  (log in with $ADMIN_TOKEN; docs/support.md)

  To use the CLI against this stack from another shell, paste:

    export DATABASE_URL=$DATABASE_URL
    export STRIPE_API_KEY=$STRIPE_API_KEY STRIPE_API_BASE=$STRIPE_API_BASE
    export STRIPE_EXPECT_LIVEMODE=$STRIPE_EXPECT_LIVEMODE STRIPE_WEBHOOK_SECRET=$STRIPE_WEBHOOK_SECRET
    export ADMIN_TOKEN=$ADMIN_TOKEN PATH=$root/target/debug:\$PATH

  then: reconciler inspect --session cs_…   |   reconciler session cs_…   |   edge migrate --status
        reconciler redeliver --order <id>   |   reconciler sweep --since 35d
    curl -X POST -H "Authorization: Bearer \$ADMIN_TOKEN" http://$RECONCILER_ADMIN_LISTEN/reconcile/run

  Send a signed test event (creates an order, pays it, shows it before and after):

    EDGE_URL=http://$EDGE_LISTEN STRIPE_WEBHOOK_SECRET=$STRIPE_WEBHOOK_SECRET \\
      DATABASE_URL=$DATABASE_URL scripts/send-test-event.sh

  Real Stripe test events: stripe listen --forward-to $EDGE_LISTEN/stripe/webhook, then restart
  with STRIPE_WEBHOOK_SECRET=<its whsec_>,$STRIPE_WEBHOOK_SECRET

  Ctrl-C (or kill -INT / -TERM $$) stops everything, PostgreSQL included. A fresh start:
  scripts/dev.sh --reset
EOT
wait "${pids[0]}"
