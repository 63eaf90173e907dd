-- The ledger's order updates become HOT (heap-only tuples): an UPDATE that changes no indexed
-- column writes no index entry, and with room left on the order's page it writes no new page
-- either. Before this, every paying update changed two indexed columns (`updated_at` and
-- `stripe_payment_intent_id`), so each one inserted a new entry into each of the four indexes of
-- `orders`.
--
-- - Orders are found by payment intent through `order_payment_intents` (kept by triggers from
--   `orders.stripe_payment_intent_id`, which stays the order's truth), not through an index on
--   `orders`.
-- - Orphan adoption finds the orders whose keys appeared or changed since a pass through
--   `orders.keys_changed_at` (set when an order is created and when its session id changes: never
--   by the ledger) and `order_payment_intents.recorded_at`, not through an index on `updated_at`.
-- - `orders` keeps a fifth of each page free for the new versions of its rows.
--
-- Additive for older builds: a build made for V7 still reads and writes the same columns (the
-- triggers keep the new table in step with its writes); its look-ups by payment intent and its
-- orphan candidates scan `orders` instead of an index until it is replaced.
--
-- Every index of the schema after this migration, and the query it serves:
--   orders_pkey                           every look-up of an order by id (the ledger's locks)
--   orders_stripe_session_id_key          the ledger's order look-up by session (sql.rs
--                                         `order_lookup!`), `reconciler session`, support search
--   orders_keys_changed_at_idx            orphan adoption's candidates (sql.rs CLAIMABLE_ORPHANS)
--   orders_anomaly_idx                    the support overview's orders with an anomaly
--   order_payment_intents_pkey            the ledger's order look-up by payment intent
--                                         (`order_lookup!`), support search by `pi_…`
--   order_payment_intents_recorded_at_idx orphan adoption's candidates by payment intent
--   payment_events_pkey                   orphan adoption's claim (payload by id)
--   payment_events_stripe_event_id_key    the ledger's idempotence (ON CONFLICT), KNOWN_EVENT_IDS,
--                                         LINK_EVENTS, support search by `evt_…`
--   payment_events_stripe_session_id_idx  inspect and support by session, the runbook's SQL
--                                         (docs/operations.md), orphan adoption by session
--   payment_events_order_id_idx           an order's timeline (inspect, support page)
--   payment_events_request_id_idx         `reconciler inspect --request-id` (a requestId from a
--                                         log line or a customer's screenshot)
--   payment_events_orphan_*_idx           orphan adoption by client reference, metadata, payment
--                                         intent (partial: orphans only)
--   reconcile_runs_ok_window_idx          where the next pass starts (runs.rs, max(window_to))
--   reconcile_runs_tick_idx               a replica's check that its tick already ran
--   reconcile_scans_open_idx              the open windows a pass drains
--   reconcile_scans_window_to_idx         the newest scanned window
--   order_transitions_due_idx             the deliverers' next rows
--   order_transitions_order_idx           an order's earlier undelivered row, the timeline
--   order_transitions_dead_idx            the dead-row alert and `redeliver --dead`
--   refunds_order_idx, disputes_order_idx an order's refunds and disputes (inspect, support)
--   disputes_open_idx                     open disputes by due date (alert, support overview)

ALTER TABLE orders SET (fillfactor = 80);

ALTER TABLE orders ADD COLUMN keys_changed_at timestamptz NULL;
UPDATE orders SET keys_changed_at = updated_at;
ALTER TABLE orders ALTER COLUMN keys_changed_at SET NOT NULL,
    ALTER COLUMN keys_changed_at SET DEFAULT now();
CREATE INDEX orders_keys_changed_at_idx ON orders (keys_changed_at);
DROP INDEX orders_updated_at_idx;

-- An app that sets the session id on an existing order marks its keys changed.
CREATE OR REPLACE FUNCTION orders_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    NEW.keys_changed_at := now();
    RETURN NEW;
END $$;

CREATE INDEX orders_anomaly_idx ON orders (anomaly) WHERE anomaly IS NOT NULL;

-- Each payment intent an order has been paid through. A payment intent that moves to another
-- order (it cannot on Stripe; a hand edit can) follows it. No foreign key: its check would cost
-- a query per paying event, and the look-ups join `orders` (and check that the order still has
-- this payment intent), so a row whose order was deleted by hand is never used.
CREATE TABLE order_payment_intents (
    stripe_payment_intent_id text PRIMARY KEY,
    order_id                 uuid NOT NULL,
    recorded_at              timestamptz NOT NULL DEFAULT now()
);
-- Rows only arrive, in time order: a block-range index costs next to nothing to keep.
CREATE INDEX order_payment_intents_recorded_at_idx ON order_payment_intents
    USING brin (recorded_at);

INSERT INTO order_payment_intents (stripe_payment_intent_id, order_id, recorded_at)
SELECT DISTINCT ON (stripe_payment_intent_id) stripe_payment_intent_id, id, updated_at
FROM orders WHERE stripe_payment_intent_id IS NOT NULL
ORDER BY stripe_payment_intent_id, updated_at DESC;

CREATE FUNCTION orders_payment_intent_recorded() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_payment_intents (stripe_payment_intent_id, order_id)
    VALUES (NEW.stripe_payment_intent_id, NEW.id)
    ON CONFLICT (stripe_payment_intent_id) DO UPDATE
        SET order_id = excluded.order_id, recorded_at = now()
        WHERE order_payment_intents.order_id <> excluded.order_id;
    RETURN NULL;
END $$;
CREATE TRIGGER orders_payment_intent_inserted AFTER INSERT ON orders FOR EACH ROW
    WHEN (NEW.stripe_payment_intent_id IS NOT NULL)
    EXECUTE FUNCTION orders_payment_intent_recorded();
CREATE TRIGGER orders_payment_intent_changed AFTER UPDATE OF stripe_payment_intent_id ON orders
    FOR EACH ROW
    WHEN (NEW.stripe_payment_intent_id IS NOT NULL
        AND NEW.stripe_payment_intent_id IS DISTINCT FROM OLD.stripe_payment_intent_id)
    EXECUTE FUNCTION orders_payment_intent_recorded();
DROP INDEX orders_stripe_payment_intent_id_idx;
