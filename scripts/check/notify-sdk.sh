#!/usr/bin/env bash
# Order notifications verified by the apps' own tools: the official Stripe SDKs' constructEvent.
# A throwaway PostgreSQL, an edge paid 20 orders by the load generator, then `reconciler run`
# delivers their 20 notifications to
#   tests/apps/notify-node     Node, stripe (npm ci from its lock file): stripe.webhooks.constructEvent
#   tests/apps/notify-python   Python, stripe (pip, in a virtualenv): stripe.Webhook.construct_event
# in turn; each must verify all 20, once each. A reconciler signing with another secret is refused
# by both (400, not acknowledged), which proves they verify.
. "$(dirname "$0")/../lib.sh"
need_commands node:nodejs npm:npm python3:python3 curl:curl
python3 -c 'import ensurepip' 2>/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
}
export STRIPE_EXPECT_LIVEMODE=false LOG_FORMAT=json RECONCILE_SCHEDULE="0 0 0 1 1 *"
secret=notify_sdk_check_secret_0123456789abcdef

echo "==> building the binaries"
cargo build --locked -q -p edge -p reconciler -p tools --bin edge --bin reconciler --bin loadgen
use_scratch_dir edge-notify-sdk
start_throwaway_pg "$work"
export DATABASE_URL="postgres://postgres@/bench?host=$work"
psql_q() { "$(pg_bin_dir)/psql" -h "$work" -U postgres -d bench -qAt -v ON_ERROR_STOP=1 -c "$1"; }

echo "==> the receivers' SDKs"
cp -r tests/apps/notify-node tests/apps/notify-python "$work/"
(cd "$work/notify-node" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q -r "$work/notify-python/requirements.txt"
echo "    node stripe $(cd "$work/notify-node" && node -p 'JSON.parse(require("fs").readFileSync("node_modules/stripe/package.json")).version'), python stripe $("$work/venv/bin/python" -c 'import stripe; print(stripe.VERSION)')"

echo "==> 20 paid orders"
./target/debug/edge migrate >/dev/null
port=$(free_port); admin=$(free_port)
EDGE_LISTEN=127.0.0.1:$port EDGE_ADMIN_LISTEN=127.0.0.1:$admin STRIPE_WEBHOOK_SECRET=whsec_notify_sdk \
  ./target/debug/edge serve >"$work/edge.log" 2>&1 &
scratch_pids+=($!)
wait_for_url "http://127.0.0.1:$admin/ready"
./target/debug/loadgen --addr "127.0.0.1:$port" --secret whsec_notify_sdk --connections 4 \
  --requests 20 --label notify >/dev/null
[ "$(psql_q "SELECT count(*) FROM order_transitions WHERE kind = 'order.paid'")" = 20 ]

# receiver NAME: starts it on a free port; sets receiver_pid and receiver_url.
receiver() {
  local name=$1 rport
  rport=$(free_port)
  case $name in
    node) (cd "$work/notify-node" && APP_NOTIFY_SECRET=$secret PORT=$rport OUT=$work/node.jsonl \
            exec node server.js) >"$work/node.log" 2>&1 & ;;
    python) APP_NOTIFY_SECRET=$secret PORT=$rport OUT=$work/python.jsonl \
            "$work/venv/bin/python" "$work/notify-python/server.py" >"$work/python.log" 2>&1 & ;;
  esac
  receiver_pid=$!
  scratch_pids+=("$receiver_pid")
  receiver_url=http://127.0.0.1:$rport/notifications
  for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$rport") 2>/dev/null && return 0; sleep 0.1; done
  echo "the $name receiver did not start: $(cat "$work/$name.log")" >&2
  return 1
}

# deliver URL SECRET: runs the daemon until every notification is delivered (or 20 s), then stops it.
deliver() {
  local radmin pid
  radmin=$(free_port)
  APP_NOTIFY_URL=$1 APP_NOTIFY_SECRET=$2 RECONCILER_ADMIN_LISTEN=127.0.0.1:$radmin \
    STRIPE_API_KEY=sk_test_unused STRIPE_API_BASE=http://127.0.0.1:9 \
    ./target/debug/reconciler run >>"$work/reconciler.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do
    [ "$(psql_q "SELECT count(*) FROM order_transitions WHERE delivered_at IS NULL")" = 0 ] && break
    sleep 0.1
  done
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

# check NAME: every notification verified exactly once by NAME's SDK, and nothing refused.
check() {
  python3 - "$work/$1.jsonl" "$1" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
ok = [l for l in lines if l["verified"]]
ids = {l["id"] for l in ok}
assert len(ok) == 20 and len(ids) == 20 and len(ok) == len(lines), lines
assert all(l["type"] == "order.paid" and l["id"].startswith("otr_") for l in ok), ok
print(f"    {sys.argv[2]}: 20 notifications verified by the Stripe SDK's constructEvent, each once")
PY
}

requeue() { psql_q "UPDATE order_transitions SET delivered_at = NULL, next_attempt_at = now()" >/dev/null; }

for name in node python; do
  echo "==> $name"
  receiver "$name"
  deliver "$receiver_url" notify_sdk_check_another_secret_0123456789
  [ "$(psql_q "SELECT count(*) FROM order_transitions WHERE delivered_at IS NOT NULL")" = 0 ]
  grep -q '"verified": *false' "$work/$name.jsonl"
  echo "    $name: signed with another secret: refused, nothing acknowledged"
  rm -f "$work/$name.jsonl"
  requeue
  deliver "$receiver_url" "$secret"
  check "$name"
  grep -q 'fulfilled order' "$work/$name.log"
  requeue
done
echo "notify-sdk checks: ok"
