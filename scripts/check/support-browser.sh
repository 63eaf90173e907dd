#!/usr/bin/env bash
# The support page in a real browser: a throwaway PostgreSQL, the Stripe simulator holding a paid
# Checkout Session whose webhook never came (three days old, beyond the start-up pass's window), a
# `reconciler run` with ADMIN_TOKEN, then tests/apps/support-browser/drive.py drives Debian's
# headless Chromium (through Playwright, JavaScript off) through login, overview, search, "Reconcile
# this session" and "Redeliver notification", and checks keyboard use and 400 % zoom.
# SUPPORT_SHOTS=<dir> keeps the screenshots there (docs/img/support for docs/support.md).
. "$(dirname "$0")/../lib.sh"
need_commands chromium:chromium python3:python3 curl:curl
python3 -c 'import ensurepip' 2>/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
}
export STRIPE_EXPECT_LIVEMODE=false LOG_FORMAT=json
token=support-browser-check-token-0123
key=sk_test_support_browser

echo "==> building the binaries"
cargo build --locked -q -p edge -p reconciler -p sim --bin edge --bin reconciler --bin stripe-sim
use_scratch_dir edge-support-browser
start_throwaway_pg "$work"
export DATABASE_URL="postgres://postgres@/bench?host=$work"
psql_q() { "$(pg_bin_dir)/psql" -h "$work" -U postgres -d bench -qAt -v ON_ERROR_STOP=1 -c "$1"; }

echo "==> Playwright (PyPI) for Debian's Chromium"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q -r tests/apps/support-browser/requirements.txt

echo "==> a paid session whose webhook never came"
./target/debug/edge migrate >/dev/null
session=cs_test_support_browser_1
psql_q "INSERT INTO orders (id, stripe_session_id, status) VALUES (gen_random_uuid(), '$session', 'pending')"
port=$(free_port)
./target/debug/stripe-sim --listen 127.0.0.1:$port --api-key $key >"$work/sim.log" 2>&1 &
scratch_pids+=($!)
for _ in $(seq 1 100); do grep -q listening "$work/sim.log" 2>/dev/null && break; sleep 0.1; done
python3 - "$port" "$key" "$session" <<'PY'
import json, sys, time, urllib.request
port, key, session = sys.argv[1], sys.argv[2], sys.argv[3]
created = int(time.time()) - 3 * 86400
obj = json.load(open("tests/fixtures/stripe/checkout_session.json"))
obj.update(id=session, status="complete", payment_status="paid", amount_total=2000, currency="eur",
           created=created, expires_at=created + 86400, payment_intent="pi_support_browser_1")
event = {"id": "evt_support_browser_1", "object": "event", "type": "checkout.session.completed",
         "created": created + 60, "livemode": False, "api_version": "2025-06-30.basil",
         "data": {"object": obj}, "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None}}
req = urllib.request.Request(f"http://127.0.0.1:{port}/_sim/events", data=json.dumps(event).encode(),
                             headers={"Authorization": f"Bearer {key}"}, method="POST")
urllib.request.urlopen(req).read()
PY
admin=$(free_port)
ADMIN_TOKEN=$token RECONCILER_ADMIN_LISTEN=127.0.0.1:$admin STRIPE_API_KEY=$key \
  STRIPE_API_BASE=http://127.0.0.1:$port RECONCILE_SCHEDULE="0 0 0 1 1 *" RECONCILE_LOOKBACK=1h \
  ./target/debug/reconciler run >"$work/reconciler.log" 2>&1 &
scratch_pids+=($!)
wait_for_url "http://127.0.0.1:$admin/ready"

echo "==> driving the page in headless Chromium"
BASE=http://127.0.0.1:$admin TOKEN=$token SESSION=$session CHROMIUM="$(command -v chromium)" \
  SHOTS="${SUPPORT_SHOTS:-$work/shots}" "$work/venv/bin/python" tests/apps/support-browser/drive.py
[ "$(psql_q "SELECT status FROM orders WHERE stripe_session_id = '$session'")" = paid ]
echo "support-browser check: ok"
