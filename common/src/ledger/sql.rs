//! Every statement the ledger runs, each written once. The order lookup is one macro that the
//! batch write, the orphan adoption and the single-order lookup all expand: by session id, else
//! `client_reference_id`, else `metadata.order_id` (for a session's event, only an order with no
//! session yet or the same one), else payment intent.

/// The id of the order an event belongs to, each key a single index probe. The arguments are the
/// SQL expressions of the event's four keys.
macro_rules! order_lookup {
    ($session:literal, $client_ref:literal, $metadata_ref:literal, $payment_intent:literal) => {
        concat!(
            "COALESCE(
    (SELECT o.id FROM orders AS o WHERE o.stripe_session_id = ",
            $session,
            "),
    (SELECT o.id FROM orders AS o WHERE o.id = ",
            $client_ref,
            " AND (",
            $session,
            " IS NULL OR o.stripe_session_id IS NULL OR o.stripe_session_id = ",
            $session,
            ")),
    (SELECT o.id FROM orders AS o WHERE o.id = ",
            $metadata_ref,
            " AND (",
            $session,
            " IS NULL OR o.stripe_session_id IS NULL OR o.stripe_session_id = ",
            $session,
            ")),
    (SELECT o.id FROM orders AS o WHERE o.stripe_payment_intent_id = ",
            $payment_intent,
            " LIMIT 1))"
        )
    };
}

/// Two CTEs over events given as arrays (parameters 1–4: the lookup keys, 5: the event id).
/// `matched` numbers them (`n`) and finds each one's order, or else the other order that its
/// `client_reference_id` / `metadata.order_id` names although that order has another session
/// (`mismatch_id`); `locked` locks those orders in id order, so that concurrent batches cannot
/// deadlock on them. The argument is the locking clause.
macro_rules! match_and_lock {
    ($locking:literal) => {
        concat!(
            "WITH matched AS MATERIALIZED (
    SELECT k.*,
        CASE WHEN k.order_id IS NULL AND k.session_id IS NOT NULL THEN
            (SELECT o.id FROM orders AS o
             WHERE o.id IN (k.client_ref, k.metadata_ref) AND o.stripe_session_id <> k.session_id
             LIMIT 1)
        END AS mismatch_id
    FROM (
        SELECT i.n, i.event_id, i.session_id, i.client_ref, i.metadata_ref, i.payment_intent, ",
            order_lookup!(
                "i.session_id",
                "i.client_ref",
                "i.metadata_ref",
                "i.payment_intent"
            ),
            " AS order_id
        FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::text[], $5::text[])
            WITH ORDINALITY AS i (session_id, client_ref, metadata_ref, payment_intent, event_id, n)
    ) AS k
), locked AS MATERIALIZED (
    SELECT o.id, o.status, o.amount_total, o.currency, o.stripe_payment_intent_id, o.amount_refunded
    FROM orders AS o
    WHERE o.id = ANY (ARRAY(SELECT coalesce(m.order_id, m.mismatch_id) FROM matched AS m))
    ORDER BY o.id
    ",
            $locking,
            "
)"
        )
    };
}

/// What both lock statements return for each event, after their own columns: whether its order
/// is locked by someone else (`busy`, only when skipping locked rows or when the order vanished),
/// whether it names another session's order (`mismatch`), then that order as locked.
macro_rules! lock_columns {
    () => {
        "coalesce(m.order_id, m.mismatch_id) IS NOT NULL AND l.id IS NULL AS busy,
       m.order_id IS NULL AND m.mismatch_id IS NOT NULL AS mismatch,
       l.id, l.status, l.amount_total, l.currency, l.stripe_payment_intent_id, l.amount_refunded
FROM matched AS m LEFT JOIN locked AS l ON l.id = coalesce(m.order_id, m.mismatch_id)
ORDER BY m.n"
    };
}

/// Finds and locks every distinct event's order, then inserts the events whose order is locked
/// (or who have none). Parameters 1–5: the lookup keys and the event id; 6–12: the other columns;
/// 13: the source. One row per distinct event, in input order: whether it was inserted, then the
/// [`lock_columns!`].
macro_rules! lock_and_insert {
    ($locking:literal) => {
        concat!(
            match_and_lock!($locking),
            ", inserted AS (
    INSERT INTO payment_events (stripe_event_id, event_type, stripe_object_id, stripe_session_id,
        order_id, livemode, api_version, stripe_created_at, payload, source, request_id,
        client_reference_id, metadata_order_id, stripe_payment_intent_id)
    SELECT m.event_id, e.event_type, e.object_id, m.session_id,
        CASE WHEN m.order_id IS NOT NULL THEN l.id END, e.livemode, e.api_version, e.created,
        e.payload::json, $13, e.request_id, m.client_ref, m.metadata_ref, m.payment_intent
    FROM unnest($6::text[], $7::text[], $8::bool[], $9::text[], $10::timestamptz[], $11::text[],
            $12::text[])
        WITH ORDINALITY AS e (event_type, object_id, livemode, api_version, created, payload,
            request_id, n)
    JOIN matched AS m ON m.n = e.n
    LEFT JOIN locked AS l ON l.id = coalesce(m.order_id, m.mismatch_id)
    WHERE coalesce(m.order_id, m.mismatch_id) IS NULL OR l.id IS NOT NULL
    ORDER BY m.event_id
    ON CONFLICT (stripe_event_id) DO NOTHING
    RETURNING stripe_event_id
)
SELECT m.event_id IN (SELECT x.stripe_event_id FROM inserted AS x) AS inserted,
       ",
            lock_columns!()
        )
    };
}

/// [`lock_and_insert!`] waiting for locked orders (up to the session's `lock_timeout`).
pub(super) const LOCK_AND_INSERT: &str = lock_and_insert!("FOR UPDATE");

/// [`lock_and_insert!`] skipping orders locked by another transaction: their events are left out
/// and reported `busy`.
pub(super) const LOCK_AND_INSERT_SKIP_LOCKED: &str = lock_and_insert!("FOR UPDATE SKIP LOCKED");

/// Finds and locks the orders of events already in the ledger (parameters 1–5 as in
/// [`LOCK_AND_INSERT`]), skipping those locked by others; one row per event, in input order: the
/// [`lock_columns!`].
pub(super) const LOCK_ORDERS: &str = concat!(
    match_and_lock!("FOR UPDATE SKIP LOCKED"),
    "
SELECT ",
    lock_columns!()
);

/// Writes each changed order's final state (parameters 1–6, 14–15): the status, the last `paid_at`
/// and anomaly, the payment intent: the paying event's ($6), else only where the order has none,
/// and the paid amount and currency where the order expected none.
/// In the same statement, the batch's status changes go to the outbox (parameters 7–13, 16–17:
/// order, kind, from, to, event, when, livemode, the order's amount and currency at that point;
/// in the order the batch made them, which the identity keeps), each carrying its order; the
/// deliverers are woken at `COMMIT` when there was any.
pub(super) const UPDATE_ORDERS: &str = "\
WITH updated AS (
    UPDATE orders AS o
    SET status = u.status,
        paid_at = COALESCE(u.paid_at, o.paid_at),
        stripe_payment_intent_id = CASE WHEN u.replaces_pi THEN u.payment_intent
            ELSE COALESCE(o.stripe_payment_intent_id, u.payment_intent) END,
        anomaly = COALESCE(u.anomaly, o.anomaly),
        amount_total = COALESCE(o.amount_total, u.paid_amount),
        currency = COALESCE(o.currency, u.paid_currency),
        updated_at = now()
    FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::bool[],
            $14::bigint[], $15::text[])
        AS u (id, status, paid_at, payment_intent, anomaly, replaces_pi, paid_amount, paid_currency)
    WHERE o.id = u.id
    RETURNING o.id, o.stripe_session_id, o.amount_total, o.currency, o.amount_refunded,
        o.dispute_status
), transitions AS (
    INSERT INTO order_transitions (order_id, kind, from_status, to_status, stripe_event_id,
        occurred_at, livemode, stripe_session_id, amount_total, currency, amount_refunded,
        dispute_status)
    SELECT t.order_id, t.kind, t.from_status, t.to_status, t.event_id, t.occurred_at, t.livemode,
        u.stripe_session_id, t.amount_total, t.currency, u.amount_refunded, u.dispute_status
    FROM unnest($7::uuid[], $8::text[], $9::text[], $10::text[], $11::text[],
            $12::timestamptz[], $13::bool[], $16::bigint[], $17::text[])
        WITH ORDINALITY AS t (order_id, kind, from_status, to_status, event_id, occurred_at,
            livemode, amount_total, currency, n)
    JOIN updated AS u ON u.id = t.order_id
    ORDER BY t.n
    RETURNING 1
)
SELECT CASE WHEN count(*) > 0 THEN pg_notify('order_transitions', '') END FROM transitions";

/// Applies a batch's refund, dispute and charge snapshots to their orders, in order, and settles
/// the orders it paid that already had refunds (`ledger_apply_money`, migration V7): the refund and
/// dispute rows (an older snapshot never overwrites a newer one), the orders' money columns and
/// status, and their outbox rows. Parameters 1–15: one element per snapshot (see [`super::money`]).
/// One row per status change: the event, from, to.
pub(super) const APPLY_MONEY: &str = "\
SELECT changed_event, changed_from, changed_to FROM ledger_apply_money($1::uuid[], $2::text[],
    $3::timestamptz[], $4::bool[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[],
    $10::text[], $11::text[], $12::text[], $13::timestamptz[], $14::bigint[], $15::bool[])";

/// Links events to the order found for them after they were stored (a refund whose payment
/// intent an earlier event of the same batch recorded; an orphan whose order now exists).
pub(super) const LINK_EVENTS: &str = "\
UPDATE payment_events AS p SET order_id = l.order_id
FROM unnest($1::text[], $2::uuid[]) AS l (event_id, order_id)
WHERE p.stripe_event_id = l.event_id";

/// Orphans (events stored with no order) that the orders changed since $1, or the orders $2, may
/// now claim: joins from those orders through each key's index, never a scan of the orphans.
/// At most $3 of them, oldest first: the payload text (exact, never expanded).
pub(super) const CLAIMABLE_ORPHANS: &str = "\
WITH candidates AS (
    SELECT o.id, o.stripe_session_id, o.stripe_payment_intent_id
    FROM orders AS o
    WHERE o.updated_at >= $1 OR o.id = ANY($2)
), claimable AS (
    SELECT e.id FROM candidates AS c JOIN payment_events AS e
        ON e.stripe_session_id = c.stripe_session_id AND e.order_id IS NULL
    UNION
    SELECT e.id FROM candidates AS c JOIN payment_events AS e
        ON e.client_reference_id = c.id AND e.order_id IS NULL
    UNION
    SELECT e.id FROM candidates AS c JOIN payment_events AS e
        ON e.metadata_order_id = c.id AND e.order_id IS NULL
    UNION
    SELECT e.id FROM candidates AS c JOIN payment_events AS e
        ON e.stripe_payment_intent_id = c.stripe_payment_intent_id AND e.order_id IS NULL
)
SELECT e.payload::text
FROM payment_events AS e JOIN claimable AS x ON x.id = e.id
ORDER BY e.stripe_created_at, e.id
LIMIT $3";

/// Which of the event ids ($1) the ledger holds.
pub(super) const KNOWN_EVENT_IDS: &str =
    "SELECT stripe_event_id FROM payment_events WHERE stripe_event_id = ANY($1)";

/// The order that an event with these keys ($1–$4) belongs to.
pub(super) const FIND_ORDER: &str = concat!(
    "SELECT id, status, amount_total, currency, stripe_payment_intent_id, amount_refunded FROM orders WHERE id = ",
    order_lookup!("$1::text", "$2::uuid", "$3::uuid", "$4::text")
);

/// Of the events a sweep would make (parameters 1–4: the lookup keys; 5: the event's type; 6: for
/// refunds and disputes, the object id and 7: its status), the positions (1-based) whose order
/// exists and lacks what they say: a session's order that the event would move, a refund or
/// dispute the order does not hold in that status.
pub(super) const SWEEP_LACKING: &str = concat!(
    "SELECT i.n FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
        $6::text[], $7::text[])
    WITH ORDINALITY AS i (session_id, client_ref, metadata_ref, payment_intent, event_type,
        object_id, status, n)
JOIN orders AS o ON o.id = ",
    order_lookup!(
        "i.session_id",
        "i.client_ref",
        "i.metadata_ref",
        "i.payment_intent"
    ),
    "
WHERE CASE
    WHEN i.event_type = 'checkout.session.completed' THEN o.status IN ('pending', 'failed', 'expired')
    WHEN i.event_type = 'checkout.session.expired' THEN o.status = 'pending'
    WHEN i.event_type LIKE 'refund.%' THEN NOT EXISTS (
        SELECT 1 FROM refunds AS r WHERE r.id = i.object_id AND r.status = i.status)
    WHEN i.event_type LIKE 'charge.dispute.%' THEN NOT EXISTS (
        SELECT 1 FROM disputes AS d WHERE d.id = i.object_id AND d.status = i.status)
    ELSE false END
ORDER BY i.n"
);
