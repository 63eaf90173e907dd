#!/usr/bin/env bash
# Sends one signed checkout.session.completed event to the edge, as Stripe would, and shows the
# order before and after. The order is created first when DATABASE_URL is set.
#
#   scripts/send-test-event.sh [session_id]
#
# Env: EDGE_URL (default http://127.0.0.1:8080), STRIPE_WEBHOOK_SECRET (first of the list is used),
#      DATABASE_URL (optional: create and show the order).
set -euo pipefail
edge_url=${EDGE_URL:-http://127.0.0.1:8080}
secret=${STRIPE_WEBHOOK_SECRET:?set STRIPE_WEBHOOK_SECRET (scripts/dev.sh prints it)}
secret=${secret%%,*}
suffix=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
session=${1:-cs_test_dev_$suffix}
event=evt_dev_$suffix
now=$(date +%s)

if [ -n "${DATABASE_URL:-}" ] && command -v psql >/dev/null; then
  psql "$DATABASE_URL" -qAt -v ON_ERROR_STOP=1 -c \
    "INSERT INTO orders (id, stripe_session_id, amount_total, currency)
     VALUES (gen_random_uuid(), '$session', 2000, 'eur') ON CONFLICT (stripe_session_id) DO NOTHING" >/dev/null
  echo "order before: $(psql "$DATABASE_URL" -qAt -c "SELECT id || ' ' || status FROM orders WHERE stripe_session_id = '$session'")"
fi

body=$(cat <<JSON
{"id":"$event","object":"event","api_version":"2025-06-30.basil","created":$now,"data":{"object":{"id":"$session","object":"checkout.session","amount_total":2000,"currency":"eur","client_reference_id":null,"livemode":false,"metadata":{},"mode":"payment","payment_intent":"pi_dev_$suffix","payment_status":"paid","status":"complete"}},"livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null},"type":"checkout.session.completed"}
JSON
)
sig=$(printf '%s.%s' "$now" "$body" | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1)
echo "POST $edge_url/stripe/webhook  ($event for $session)"
curl -sS -i -X POST "$edge_url/stripe/webhook" \
  -H "Content-Type: application/json; charset=utf-8" \
  -H "Stripe-Signature: t=$now,v1=$sig" \
  --data-binary "$body"
echo

if [ -n "${DATABASE_URL:-}" ] && command -v psql >/dev/null; then
  echo "order after:  $(psql "$DATABASE_URL" -qAt -c "SELECT id || ' ' || status || ' paid_at=' || coalesce(paid_at::text, '-') FROM orders WHERE stripe_session_id = '$session'")"
fi
