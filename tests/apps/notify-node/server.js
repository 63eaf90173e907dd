// An app's order notification endpoint, as docs/integration.md writes it: the raw body and the
// Edge-Signature header go to the Stripe SDK's constructEvent with APP_NOTIFY_SECRET; a verified
// notification is deduplicated by its id and acted on; anything else is answered 400.
//
//   APP_NOTIFY_SECRET=... PORT=... OUT=received.jsonl node server.js
const http = require('node:http');
const fs = require('node:fs');
const Stripe = require('stripe');

const stripe = new Stripe(process.env.STRIPE_SECRET_KEY || 'sk_test_unused');
const secret = process.env.APP_NOTIFY_SECRET;
const out = process.env.OUT || 'received.jsonl';
const seen = new Set();

http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(chunks);
    let notification;
    try {
      notification = stripe.webhooks.constructEvent(raw, req.headers['edge-signature'], secret);
    } catch (err) {
      fs.appendFileSync(out, JSON.stringify({ verified: false, error: err.message }) + '\n');
      res.writeHead(400).end('bad signature');
      return;
    }
    if (!seen.has(notification.id)) {
      seen.add(notification.id);
      if (notification.type === 'order.paid') console.log(`fulfilled order ${notification.order_id}`);
    }
    fs.appendFileSync(out, JSON.stringify({ verified: true, id: notification.id, type: notification.type, order_id: notification.order_id }) + '\n');
    res.writeHead(200).end('ok');
  });
}).listen(Number(process.env.PORT), '127.0.0.1');
