// The benchmark peer: the Stripe webhook receiver most teams write, following Stripe's docs.
// Express with express.raw() on the webhook route, stripe.webhooks.constructEvent, and a pg Pool;
// per event one transaction: insert into the ledger (ON CONFLICT DO NOTHING), and if the event
// was new, mark the order paid; then 200. Bad signature → 400, database error → 500.
'use strict';

const express = require('express');
const Stripe = require('stripe');
const { Pool } = require('pg');

const stripe = new Stripe('sk_test_unused_by_webhooks');
const secret = process.env.STRIPE_WEBHOOK_SECRET;
const pool = new Pool({ max: Number(process.env.PG_POOL_MAX || 20) });
const app = express();

app.get('/healthz', (_req, res) => res.send('ok'));

app.post('/webhook', express.raw({ type: '*/*', limit: '1mb' }), async (req, res) => {
  let event;
  try {
    event = stripe.webhooks.constructEvent(req.body, req.get('stripe-signature'), secret);
  } catch (err) {
    return res.status(400).json({ error: `signature: ${err.message}` });
  }
  const session = event.data && event.data.object;
  const sessionId = session && session.object === 'checkout.session' ? session.id : null;
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const inserted = await client.query(
      `INSERT INTO payment_events (stripe_event_id, type, stripe_session_id, payload)
       VALUES ($1, $2, $3, $4) ON CONFLICT (stripe_event_id) DO NOTHING RETURNING 1`,
      [event.id, event.type, sessionId, req.body.toString('utf8')],
    );
    if (inserted.rowCount === 1 && event.type === 'checkout.session.completed' && sessionId) {
      await client.query(
        `UPDATE orders SET status = 'paid', paid_at = now()
         WHERE stripe_session_id = $1 AND status <> 'paid'`,
        [sessionId],
      );
    }
    await client.query('COMMIT');
    res.json({ received: true, duplicate: inserted.rowCount === 0 });
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    res.status(500).json({ error: 'storage' });
  } finally {
    client.release();
  }
});

const port = Number(process.env.PORT || 3000);
app.listen(port, process.env.HOST || '127.0.0.1', () => {
  console.log(`peer listening on ${port}`);
});
