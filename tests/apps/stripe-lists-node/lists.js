// The official Stripe Node client against the simulator: lists Checkout Sessions, refunds and
// disputes created since SINCE, auto-paginating 100 at a time, retrieves one refund and one
// dispute, and prints what it saw as JSON. Usage: SIM_URL=http://127.0.0.1:PORT API_KEY=sk_test_…
// SINCE=<unix> node lists.js
const Stripe = require("stripe");

const url = new URL(process.env.SIM_URL);
const stripe = new Stripe(process.env.API_KEY, {
  host: url.hostname,
  port: Number(url.port),
  protocol: url.protocol.replace(":", ""),
  maxNetworkRetries: 0,
});
const since = Number(process.env.SINCE);

async function ids(resource) {
  const all = await resource
    .list({ limit: 100, created: { gte: since } })
    .autoPagingToArray({ limit: 10000 });
  return all.map((o) => o.id);
}

(async () => {
  const sessions = await ids(stripe.checkout.sessions);
  const refunds = await ids(stripe.refunds);
  const disputes = await ids(stripe.disputes);
  const refund = await stripe.refunds.retrieve(refunds[0]);
  const dispute = await stripe.disputes.retrieve(disputes[0]);
  console.log(
    JSON.stringify({
      client: `stripe-node ${Stripe.PACKAGE_VERSION || require("stripe/package.json").version}`,
      sessions: sessions.length,
      sessionsDistinct: new Set(sessions).size,
      refunds: refunds.length,
      disputes: disputes.length,
      retrieved: [refund.object, dispute.object],
    }),
  );
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
