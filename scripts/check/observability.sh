#!/usr/bin/env bash
# Checks the dashboards and alert rules with real tools (run by .ci/run):
#   1. promtool check rules (lint) and promtool test rules;
#   2. the dashboards offline (structure, units, datasource variable, PromQL syntax);
#   3. promtool check metrics on the edge's and the reconciler's /metrics;
#   4. a real Prometheus scraping a running edge, a second edge serving HTTPS (checked with
#      `curl --cacert` over HTTP/1.1 and h2, and `openssl s_client` for the chain and ALPN), a Stripe
#      simulator and a reconciler while traffic flows (a checkout scenario with dropped and
#      duplicated webhooks, bad signatures, proxied requests): every panel query and template
#      variable must return data and every rule evaluate cleanly;
#   5. Grafana's own TypeScript types (@grafana/schema) against the dashboard JSON
#      (tests/dashboard-schema).
# The checks are the project's own: scripts/check/dashboards.py, scripts/check/prometheus.sh,
# scripts/check/alert-tests.py --check. Installs Debian's prometheus package when promtool is
# missing, and Node's npm packages of the schema check.
. "$(dirname "$0")/../lib.sh"
root=$(pwd)

need_commands promtool:prometheus prometheus:prometheus node:nodejs npm:npm openssl:openssl curl:curl

echo "==> promtool check rules / test rules"
promtool check rules --lint=all --lint-fatal dashboards/alerts.yml
python3 scripts/check/alert-tests.py --check
promtool test rules dashboards/alerts.test.yml
rendered=$(mktemp -t edge-rules-XXXXXX.yml)
python3 scripts/render-alerts.py --runbook-base https://docs.example.com/stripe-edge/docs/ >"$rendered"
promtool check rules --lint=all --lint-fatal "$rendered" >/dev/null
grep -q 'runbook_url: https://docs.example.com/stripe-edge/docs/operations.md#' "$rendered"
rm -f "$rendered"

echo "==> dashboards, offline"
python3 scripts/check/dashboards.py dashboards

echo "==> building the binaries"
cargo build --locked -q -p edge -p reconciler -p sim --bin edge --bin reconciler --bin stripe-sim

use_scratch_dir edge-obs
start_throwaway_pg "$work"
./target/debug/edge migrate >/dev/null

edge_port=$(free_port); edge_admin=$(free_port); sim_port=$(free_port); rec_admin=$(free_port); prom_port=$(free_port)
secret=whsec_observability_check
export STRIPE_EXPECT_LIVEMODE=false RECONCILE_SETTLE=0s
key=sk_test_observability_check
token=observability-check-admin-token

echo "==> edge, Stripe simulator (playing a scenario), reconciler"
LOG_FORMAT=json EDGE_LISTEN=127.0.0.1:$edge_port EDGE_ADMIN_LISTEN=127.0.0.1:$edge_admin STRIPE_WEBHOOK_SECRET=$secret \
  UPSTREAM_URL=http://127.0.0.1:$rec_admin ./target/debug/edge serve >"$work/edge.log" 2>&1 &
scratch_pids+=($!)
wait_for_url "http://127.0.0.1:$edge_admin/ready"

echo "==> a second edge serving HTTPS (a CA and a certificate for localhost made with openssl)"
tls_port=$(free_port); tls_admin=$(free_port)
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=obs-ca -keyout "$work/ca.key" \
  -out "$work/ca.crt" -addext basicConstraints=critical,CA:TRUE 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$work/edge.key" -out "$work/edge.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' >"$work/edge.ext"
openssl x509 -req -in "$work/edge.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
  -days 30 -extfile "$work/edge.ext" -out "$work/edge.crt" 2>/dev/null
LOG_FORMAT=json EDGE_LISTEN=127.0.0.1:$tls_port EDGE_ADMIN_LISTEN=127.0.0.1:$tls_admin STRIPE_WEBHOOK_SECRET=$secret \
  EDGE_TLS_CERT_FILE="$work/edge.crt" EDGE_TLS_KEY_FILE="$work/edge.key" \
  ./target/debug/edge serve >"$work/edge-tls.log" 2>&1 &
scratch_pids+=($!)
wait_for_url "http://127.0.0.1:$tls_admin/ready"
https_edge() { curl -sS --cacert "$work/ca.crt" --resolve "localhost:$tls_port:127.0.0.1" "$@"; }
[ "$(https_edge -o /dev/null -w '%{http_code}' "https://localhost:$tls_port/stripe/webhook")" = 405 ]
[ "$(https_edge --http2 -o /dev/null -w '%{http_version}' "https://localhost:$tls_port/stripe/webhook")" = 2 ]
echo | openssl s_client -connect "127.0.0.1:$tls_port" -servername localhost -alpn h2 \
  -CAfile "$work/ca.crt" -verify_return_error 2>/dev/null | grep -q 'ALPN protocol: h2'
echo "    curl --cacert: 405 over HTTP/1.1 and h2; openssl s_client: verified, ALPN h2"
STRIPE_WEBHOOK_SECRET=$secret ./target/debug/stripe-sim --listen 127.0.0.1:$sim_port --api-key $key \
  --scenario 40 --drop 0.25 --duplicate 0.2 --edge 127.0.0.1:$edge_port >"$work/scenario.json" 2>"$work/sim.log" &
scratch_pids+=($!)
for _ in $(seq 1 600); do grep -q '"scenario":"done"' "$work/scenario.json" 2>/dev/null && break; sleep 0.1; done
cat "$work/scenario.json"
STRIPE_API_KEY=$key STRIPE_API_BASE=http://127.0.0.1:$sim_port RECONCILER_ADMIN_LISTEN=127.0.0.1:$rec_admin \
  RECONCILE_SCHEDULE="*/5 * * * * *" SWEEP_SCHEDULE="2/5 * * * * *" ADMIN_TOKEN=$token ./target/debug/reconciler run >"$work/reconciler.log" 2>&1 &
scratch_pids+=($!)
wait_for_url "http://127.0.0.1:$rec_admin/ready"

echo "==> promtool check metrics"
curl -fsS "http://127.0.0.1:$edge_admin/metrics" >"$work/edge.metrics"
curl -fsS "http://127.0.0.1:$rec_admin/metrics" >"$work/reconciler.metrics"
promtool check metrics <"$work/edge.metrics"
promtool check metrics <"$work/reconciler.metrics"

echo "==> Prometheus on 127.0.0.1:$prom_port, scraping both"
scripts/check/prometheus.sh "127.0.0.1:$prom_port" "$work/prom" dashboards/alerts.yml \
  "edge=127.0.0.1:$edge_admin,127.0.0.1:$tls_admin" "reconciler=127.0.0.1:$rec_admin" >"$work/prometheus.log" 2>&1 &
scratch_pids+=($!)
wait_for_url "http://127.0.0.1:$prom_port/-/ready"

# Steady traffic while the panels are checked: valid, duplicated and badly signed webhooks, and
# proxied requests. Bounded: at most 240 rounds of about half a second.
(
  for i in $(seq 1 240); do
    now=$(date +%s)
    body="{\"id\":\"evt_obs_$i\",\"object\":\"event\",\"type\":\"checkout.session.completed\",\"created\":$now,\"livemode\":false,\"data\":{\"object\":{\"id\":\"cs_test_obs_$i\",\"object\":\"checkout.session\",\"payment_status\":\"paid\"}}}"
    sig=$(printf '%s.%s' "$now" "$body" | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1)
    for _ in 1 2; do
      curl -s -o /dev/null -X POST -H "Stripe-Signature: t=$now,v1=$sig" --data-binary "$body" "http://127.0.0.1:$edge_port/stripe/webhook"
    done
    curl -s -o /dev/null -X POST -H "Stripe-Signature: t=$now,v1=00" --data-binary "$body" "http://127.0.0.1:$edge_port/stripe/webhook"
    curl -s -o /dev/null "http://127.0.0.1:$edge_port/live"
    https_edge -o /dev/null -X POST -H "Stripe-Signature: t=$now,v1=$sig" --data-binary "$body" \
      "https://localhost:$tls_port/stripe/webhook"
    sleep 0.5
  done
) &
scratch_pids+=($!)

echo "==> dashboards and rules against the live Prometheus"
python3 scripts/check/dashboards.py --metrics "$work/edge.metrics" "$work/reconciler.metrics" \
  --prometheus "http://127.0.0.1:$prom_port" --wait 120 --check-rules dashboards

echo "==> Grafana's schema types"
(cd tests/dashboard-schema && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
node tests/dashboard-schema/check.mjs "$root/dashboards"
echo "observability checks: ok"
