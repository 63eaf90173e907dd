#!/usr/bin/env bash
# The Stripe simulator's object lists as the official clients see them: a simulator holding 250
# Checkout Sessions, 130 refunds and 5 disputes (stored without events, as POST /_sim/objects does),
# then
#   tests/apps/stripe-lists-node     Node, stripe (npm ci from its lock file)
#   tests/apps/stripe-lists-python   Python, stripe (pip, in a virtualenv)
# each list all three with `created[gte]`, auto-paginating 100 at a time, and retrieve a refund and
# a dispute; each must see every object exactly once.
. "$(dirname "$0")/../lib.sh"
need_commands node:nodejs npm:npm python3:python3 curl:curl
python3 -c 'import ensurepip' 2>/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
}
key=sk_test_sim_sdk_check

echo "==> building the simulator"
cargo build --locked -q -p sim --bin stripe-sim
use_scratch_dir edge-sim-sdk

echo "==> the official clients"
cp -r tests/apps/stripe-lists-node tests/apps/stripe-lists-python "$work/"
(cd "$work/stripe-lists-node" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q -r "$work/stripe-lists-python/requirements.txt"

echo "==> a simulator with 250 sessions, 130 refunds, 5 disputes"
port=$(free_port)
./target/debug/stripe-sim --listen 127.0.0.1:$port --api-key $key >"$work/sim.log" 2>&1 &
scratch_pids+=($!)
for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
since=$(( $(date +%s) - 40 * 86400 ))
python3 - "$port" "$key" "$since" <<'PY'
import json, sys, urllib.request
port, key, since = sys.argv[1], sys.argv[2], int(sys.argv[3])
fixtures = "tests/fixtures/stripe/"
def post(obj):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/_sim/objects", data=json.dumps(obj).encode(),
                                 headers={"Authorization": f"Bearer {key}"}, method="POST")
    urllib.request.urlopen(req).read()
session, refund, dispute = (json.load(open(fixtures + f)) for f in
                            ("checkout_session.json", "refund.json", "dispute.json"))
for i in range(250):
    post(dict(session, id=f"cs_test_sdk_{i}", created=since + 100 + i * 3, status="complete",
              payment_status="paid"))
for i in range(130):
    post(dict(refund, id=f"re_sdk_{i}", created=since + 100 + i * 5))
for i in range(5):
    post(dict(dispute, id=f"du_sdk_{i}", created=since + 100 + i * 7))
# Older than the window: never listed.
post(dict(session, id="cs_test_sdk_old", created=since - 10))
PY

expect='{"sessions": 250, "sessionsDistinct": 250, "refunds": 130, "disputes": 5, "retrieved": ["refund", "dispute"]}'
check() {
  python3 - "$1" "$expect" <<'PY'
import json, sys
got, want = json.loads(sys.argv[1]), json.loads(sys.argv[2])
client = got.pop("client")
if got != want:
    sys.exit(f"{client}: saw {got}, expected {want}")
print(f"    {client}: {got['sessions']} sessions, {got['refunds']} refunds, {got['disputes']} disputes, each once; retrieve ok")
PY
}
echo "==> listing and auto-paginating"
check "$(cd "$work/stripe-lists-node" && SIM_URL=http://127.0.0.1:$port API_KEY=$key SINCE=$since node lists.js)"
check "$(SIM_URL=http://127.0.0.1:$port API_KEY=$key SINCE=$since "$work/venv/bin/python" "$work/stripe-lists-python/lists.py")"
echo "sim-sdk check: ok"
