-- Indexes for the queries that ran every few seconds, every pass or every support page load over
-- a whole table that grows for ever. With a year of passes (525,600 runs), a million orders and
-- 900,000 delivered notifications, each of these was a full scan of 70–110 ms:
--   - the edge's gauge of the last successful pass, every 15 s on every replica;
--   - the reconciler's start of the last orphan adoption, and its search for passes that died
--     while `running`, every pass;
--   - the support page's newest orders with an anomaly, and its count and list of the events of
--     the order types kept with no order, on every load (these read every event with no order,
--     including the types that never have one: a shop whose endpoint takes `customer.*` or
--     `invoice.*` events keeps them all; 166 and 133 ms with a million of them).
-- (The support page's notifications not delivered needed no index: the query now reads them
-- through order_transitions_due_idx and order_transitions_dead_idx.)
-- The integration test `schema::periodic_and_support_reads_stay_small` fails when one of these
-- reads touches more rows than it returns plus a margin.
--
-- Building orders_anomaly_idx and payment_events_order_type_orphans_idx reads the whole table
-- while its writes wait (in memory, about 80 ms per million orders and 125 ms per million
-- events). On a table too big for that pause, create them first with `CREATE INDEX CONCURRENTLY`
-- and these definitions; `IF NOT EXISTS` then skips them here.
--
-- Additive: builds made for V7 and V8 keep running against it. reconcile_runs gets a row per
-- pass, so its indexes cost nothing; the orders index holds only orders with an anomaly, and
-- the order updates were not HOT before it (orders_updated_at_idx), so the ledger's writes pay
-- only the check of its predicate; the events index holds only events of the order types with no
-- order, so an insert pays the check of its predicate. Its list of types is
-- `common::stripe::event::types::ORDER_TYPES`: a type added there without a migration that adds
-- it here makes the support page's reads fall back to every event with no order, which the
-- integration test above reports.

CREATE INDEX IF NOT EXISTS reconcile_runs_ok_finished_idx ON reconcile_runs (finished_at)
    WHERE status = 'ok' AND scope = 'window';
COMMENT ON INDEX reconcile_runs_ok_finished_idx IS
    'common/src/ledger/status.rs: when the last successful window pass ended (max(finished_at)), for the edge''s reconcile gauge and its alert';

CREATE INDEX IF NOT EXISTS reconcile_runs_adopted_idx ON reconcile_runs (started_at)
    WHERE orphans_adopted AND scope = 'window';
COMMENT ON INDEX reconcile_runs_adopted_idx IS
    'reconciler/src/runs.rs: when the last pass that adopted orphans started (last_adoption_start), every pass';

CREATE INDEX IF NOT EXISTS reconcile_runs_running_idx ON reconcile_runs (id) WHERE status = 'running';
COMMENT ON INDEX reconcile_runs_running_idx IS
    'reconciler/src/runs.rs: the passes that died while running, marked failed at the start of every pass (fail_interrupted)';

CREATE INDEX IF NOT EXISTS orders_anomaly_idx ON orders (updated_at) WHERE anomaly IS NOT NULL;
COMMENT ON INDEX orders_anomaly_idx IS
    'reconciler/src/support/query.rs: the support page''s newest orders with an anomaly';

CREATE INDEX IF NOT EXISTS payment_events_order_type_orphans_idx ON payment_events (stripe_created_at)
    WHERE order_id IS NULL AND event_type IN ('checkout.session.completed',
        'checkout.session.async_payment_succeeded', 'checkout.session.async_payment_failed',
        'checkout.session.expired', 'charge.refunded', 'charge.refund.updated', 'refund.created',
        'refund.updated', 'refund.failed', 'charge.dispute.created', 'charge.dispute.updated',
        'charge.dispute.closed', 'charge.dispute.funds_withdrawn', 'charge.dispute.funds_reinstated');
COMMENT ON INDEX payment_events_order_type_orphans_idx IS
    'reconciler/src/support/query.rs: the support page''s count and newest events of the order types kept with no order (orphans)';
