#!/usr/bin/env bash
# Starts the whole stack locally: PostgreSQL in a project-local data dir (.dev/), the migrations,
# and the edge. Prints the URLs, the dev webhook secret and a copy-paste signed test event, then
# runs until Ctrl-C (which stops everything it started).
#
# Env: DEV_PG_PORT (54329), EDGE_LISTEN (127.0.0.1:8080), EDGE_ADMIN_LISTEN (127.0.0.1:9464).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

root=$(pwd)
dev=$root/.dev
pg_port=${DEV_PG_PORT:-54329}
export EDGE_LISTEN=${EDGE_LISTEN:-127.0.0.1:8080}
export EDGE_ADMIN_LISTEN=${EDGE_ADMIN_LISTEN:-127.0.0.1:9464}
# A development-only secret: never use it anywhere else.
export STRIPE_WEBHOOK_SECRET=${STRIPE_WEBHOOK_SECRET:-whsec_dev_local_only_0123456789abcdef}
export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/stripe_edge"
export LOG_FORMAT=${LOG_FORMAT:-json}

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
"$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -qAt -c "SELECT 1 FROM pg_database WHERE datname = 'stripe_edge'" postgres | grep -q 1 \
  || "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres stripe_edge

echo "==> building"
cargo build --locked -q -p edge
echo "==> applying migrations"
./target/debug/edge migrate >"$dev/migrate.log"

pids=()
stop() {
  echo
  echo "==> stopping"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  as_pg "$pg_bin/pg_ctl" -D "$dev/pg/data" -m fast stop >/dev/null 2>&1 || true
}
trap stop EXIT INT TERM

./target/debug/edge serve >"$dev/edge.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://$EDGE_ADMIN_LISTEN/ready" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "edge failed to start:"; cat "$dev/edge.log"; exit 1; }
  sleep 0.1
done

cat <<EOT

  Stripe edge is running.

  webhook      http://$EDGE_LISTEN/stripe/webhook
  metrics      http://$EDGE_ADMIN_LISTEN/metrics    (also /live, /ready)
  database     $DATABASE_URL
  dev secret   $STRIPE_WEBHOOK_SECRET
  logs         .dev/edge.log (JSON, one line per event)

  Send a signed test event (creates an order, pays it, shows it before and after):

    EDGE_URL=http://$EDGE_LISTEN STRIPE_WEBHOOK_SECRET=$STRIPE_WEBHOOK_SECRET \\
      DATABASE_URL=$DATABASE_URL scripts/send-test-event.sh

  Real Stripe test events: stripe listen --forward-to $EDGE_LISTEN/stripe/webhook, then restart
  with STRIPE_WEBHOOK_SECRET=<its whsec_>,$STRIPE_WEBHOOK_SECRET

  Ctrl-C stops everything.
EOT
wait "${pids[0]}"
