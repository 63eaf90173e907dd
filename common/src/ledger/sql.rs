//! Every statement the ledger runs, each written once. The order lookup (by session id, else
//! `client_reference_id`, else `metadata.order_id`, else payment intent) is one macro that the
//! batch write, the orphan adoption and the single-order lookup all expand.

/// The id of the order an event belongs to: by session id, else `client_reference_id`, else
/// `metadata.order_id`, else payment intent, each a single index probe. The arguments are the SQL
/// expressions of those four keys.
macro_rules! order_lookup {
    ($session:literal, $client_ref:literal, $metadata_ref:literal, $payment_intent:literal) => {
        concat!(
            "COALESCE(
    (SELECT o.id FROM orders AS o WHERE o.stripe_session_id = ",
            $session,
            "),
    (SELECT o.id FROM orders AS o WHERE o.id = ",
            $client_ref,
            "),
    (SELECT o.id FROM orders AS o WHERE o.id = ",
            $metadata_ref,
            "),
    (SELECT o.id FROM orders AS o WHERE o.stripe_payment_intent_id = ",
            $payment_intent,
            " LIMIT 1))"
        )
    };
}

/// Two CTEs over events given as arrays (parameters 1–4: the lookup keys, 5: the event id):
/// `matched` numbers them (`n`) and finds each one's order; `locked` locks those orders in id
/// order, so that concurrent batches cannot deadlock on them.
macro_rules! match_and_lock {
    () => {
        concat!(
            "WITH matched AS MATERIALIZED (
    SELECT i.n, i.event_id, i.session_id, ",
            order_lookup!(
                "i.session_id",
                "i.client_ref",
                "i.metadata_ref",
                "i.payment_intent"
            ),
            " AS order_id
    FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::text[], $5::text[])
        WITH ORDINALITY AS i (session_id, client_ref, metadata_ref, payment_intent, event_id, n)
), locked AS MATERIALIZED (
    SELECT o.id, o.status, o.amount_total, o.currency, o.stripe_payment_intent_id
    FROM orders AS o
    WHERE o.id = ANY (ARRAY(SELECT m.order_id FROM matched AS m WHERE m.order_id IS NOT NULL))
    ORDER BY o.id
    FOR UPDATE
)"
        )
    };
}

/// Finds and locks every distinct event's order, then inserts the events. Parameters 1–5: the
/// lookup keys and the event id; 6–12: the other columns; 13: the source. One row per distinct
/// event, in input order: whether it was inserted, then its order as locked.
pub(super) const LOCK_AND_INSERT: &str = concat!(
    match_and_lock!(),
    ", inserted AS (
    INSERT INTO payment_events (stripe_event_id, event_type, stripe_object_id, stripe_session_id,
        order_id, livemode, api_version, stripe_created_at, payload, source, request_id)
    SELECT m.event_id, e.event_type, e.object_id, m.session_id, l.id, e.livemode, e.api_version,
        e.created, e.payload::jsonb, $13, e.request_id
    FROM unnest($6::text[], $7::text[], $8::bool[], $9::text[], $10::timestamptz[], $11::text[],
            $12::text[])
        WITH ORDINALITY AS e (event_type, object_id, livemode, api_version, created, payload,
            request_id, n)
    JOIN matched AS m ON m.n = e.n
    LEFT JOIN locked AS l ON l.id = m.order_id
    ORDER BY m.event_id
    ON CONFLICT (stripe_event_id) DO NOTHING
    RETURNING stripe_event_id
)
SELECT m.event_id IN (SELECT x.stripe_event_id FROM inserted AS x) AS inserted,
       l.id, l.status, l.amount_total, l.currency, l.stripe_payment_intent_id
FROM matched AS m LEFT JOIN locked AS l ON l.id = m.order_id
ORDER BY m.n"
);

/// Finds and locks the orders of events already in the ledger (parameters 1–5 as in
/// [`LOCK_AND_INSERT`]); one row per event, in input order: its order as locked.
pub(super) const LOCK_ORDERS: &str = concat!(
    match_and_lock!(),
    "
SELECT l.id, l.status, l.amount_total, l.currency, l.stripe_payment_intent_id
FROM matched AS m LEFT JOIN locked AS l ON l.id = m.order_id
ORDER BY m.n"
);

/// Writes each changed order's final state: the status, the last `paid_at` and anomaly, and a
/// payment intent only where the order has none.
pub(super) const UPDATE_ORDERS: &str = "\
UPDATE orders AS o
SET status = u.status,
    paid_at = COALESCE(u.paid_at, o.paid_at),
    stripe_payment_intent_id = COALESCE(o.stripe_payment_intent_id, u.payment_intent),
    anomaly = COALESCE(u.anomaly, o.anomaly),
    updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[])
    AS u (id, status, paid_at, payment_intent, anomaly)
WHERE o.id = u.id";

/// Links events to the order found for them after they were stored (a refund whose payment
/// intent an earlier event of the same batch recorded; an orphan whose order now exists).
pub(super) const LINK_EVENTS: &str = "\
UPDATE payment_events AS p SET order_id = l.order_id
FROM unnest($1::text[], $2::uuid[]) AS l (event_id, order_id)
WHERE p.stripe_event_id = l.event_id";

/// The oldest orphans (order-moving events stored with no order) of the last 30 days.
pub(super) const ORPHANS: &str = "\
SELECT payload::text FROM payment_events
WHERE order_id IS NULL AND event_type = ANY($1) AND stripe_created_at > now() - interval '30 days'
ORDER BY stripe_created_at, id
LIMIT $2";

/// Which of the event ids ($1) the ledger holds.
pub(super) const KNOWN_EVENT_IDS: &str =
    "SELECT stripe_event_id FROM payment_events WHERE stripe_event_id = ANY($1)";

/// The order that an event with these keys ($1–$4) belongs to.
pub(super) const FIND_ORDER: &str = concat!(
    "SELECT id, status, amount_total, currency, stripe_payment_intent_id FROM orders WHERE id = ",
    order_lookup!("$1", "$2", "$3", "$4")
);
