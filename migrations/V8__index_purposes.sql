-- Every index names the query it serves. An index costs every write of its table (the ledger's
-- inserts and the order updates run on every event), so the schema keeps only the indexes that a
-- query of the product or of the runbook's support SQL uses. Each comment starts with the files
-- that hold those queries, then says what they look up; `\di+` shows it, and the integration test
-- `schema::every_index_names_the_query_it_serves` checks that every index has one and that the
-- files it names exist. A new index gets its comment in the migration that creates it.
--
-- Additive (comments only): builds made for V7 keep running against it.

-- orders
COMMENT ON INDEX orders_pkey IS
    'common/src/ledger/sql.rs, reconciler/src/orders.rs: the ledger finds and locks an order by the id its event carries (client_reference_id or metadata.order_id); inspect and support read an order by id';
COMMENT ON INDEX orders_stripe_session_id_key IS
    'common/src/ledger/sql.rs, reconciler/src/orders.rs: the ledger finds an event''s order by its Checkout Session; reconcile-session and inspect look an order up by session id; one order per session';
COMMENT ON INDEX orders_stripe_payment_intent_id_idx IS
    'common/src/ledger/sql.rs, reconciler/src/support/query.rs: refund, dispute and payment_intent events find their order by payment intent; the support page''s search by pi_ id';
COMMENT ON INDEX orders_updated_at_idx IS
    'common/src/ledger/sql.rs: orphan adoption starts from the orders changed since the last pass (CLAIMABLE_ORPHANS)';

-- payment_events
COMMENT ON INDEX payment_events_pkey IS
    'common/src/ledger/sql.rs: orphan adoption joins the claimable events back by id (CLAIMABLE_ORPHANS)';
COMMENT ON INDEX payment_events_stripe_event_id_key IS
    'common/src/ledger/sql.rs, reconciler/src/inspect/query.rs: the ledger''s idempotence (INSERT ... ON CONFLICT (stripe_event_id)), the links it sets by event id (LINK_EVENTS); the reconciler''s "which of these events does the ledger lack"; inspect by evt_ id';
COMMENT ON INDEX payment_events_stripe_session_id_idx IS
    'common/src/ledger/sql.rs, reconciler/src/inspect/query.rs: orphan adoption by session id (CLAIMABLE_ORPHANS); inspect''s timeline by cs_ id';
COMMENT ON INDEX payment_events_order_id_idx IS
    'reconciler/src/inspect/query.rs: an order''s timeline, for inspect and the support page';
COMMENT ON INDEX payment_events_request_id_idx IS
    'reconciler/src/inspect/query.rs: inspect by requestId, from a log line or a support ticket';
COMMENT ON INDEX payment_events_orphan_client_ref_idx IS
    'common/src/ledger/sql.rs: orphan adoption by client_reference_id (CLAIMABLE_ORPHANS), over orphans only';
COMMENT ON INDEX payment_events_orphan_metadata_idx IS
    'common/src/ledger/sql.rs: orphan adoption by metadata.order_id (CLAIMABLE_ORPHANS), over orphans only';
COMMENT ON INDEX payment_events_orphan_payment_intent_idx IS
    'common/src/ledger/sql.rs: orphan adoption by payment intent (CLAIMABLE_ORPHANS), over orphans only';

-- reconcile_runs and reconcile_scans
COMMENT ON INDEX reconcile_runs_pkey IS
    'reconciler/src/runs.rs, reconciler/src/inspect/query.rs, reconciler/src/support/query.rs: a run''s row updated as it goes and finishes; inspect reads the runs of a request; the support page lists the newest runs; reconcile_scans references it';
COMMENT ON INDEX reconcile_runs_ok_window_idx IS
    'reconciler/src/runs.rs: the end of the newest successful window pass (max(window_to) WHERE status = ''ok'')';
COMMENT ON INDEX reconcile_runs_tick_idx IS
    'reconciler/src/runs.rs: whether a replica already ran this scheduled tick';
COMMENT ON INDEX reconcile_scans_pkey IS
    'reconciler/src/pass/scans.rs: a window''s cursor saved and the window completed, by id';
COMMENT ON INDEX reconcile_scans_open_idx IS
    'reconciler/src/pass/scans.rs: the open windows in the order passes scan them, and their count and age for the backlog gauge';
COMMENT ON INDEX reconcile_scans_window_to_idx IS
    'reconciler/src/pass/scans.rs: the newest window, where the next one starts';

-- order_transitions (the notifications' outbox)
COMMENT ON INDEX order_transitions_pkey IS
    'reconciler/src/notify/store.rs, reconciler/src/support/query.rs: a notification''s delivery recorded by id; the support page''s undelivered notifications, oldest first';
COMMENT ON INDEX order_transitions_due_idx IS
    'reconciler/src/notify/store.rs: the notifications to deliver, in the order they fall due';
COMMENT ON INDEX order_transitions_order_idx IS
    'reconciler/src/notify/store.rs: whether an earlier notification of the same order is still undelivered; an order''s notifications for inspect';
COMMENT ON INDEX order_transitions_dead_idx IS
    'reconciler/src/notify/store.rs: dead notifications, for their gauge and alert, and redeliver --dead';

-- refunds and disputes
COMMENT ON INDEX refunds_pkey IS
    'migrations/V7__refunds_and_disputes.sql, reconciler/src/support/query.rs: ledger_apply_money upserts a refund by its re_ id; the support page''s search by re_ id';
COMMENT ON INDEX refunds_order_idx IS
    'migrations/V7__refunds_and_disputes.sql, reconciler/src/inspect/query.rs: ledger_apply_money sums an order''s refunds; inspect lists them';
COMMENT ON INDEX disputes_pkey IS
    'migrations/V7__refunds_and_disputes.sql, reconciler/src/support/query.rs: ledger_apply_money upserts a dispute by its du_ id; the support page''s search by du_ id';
COMMENT ON INDEX disputes_order_idx IS
    'migrations/V7__refunds_and_disputes.sql, reconciler/src/inspect/query.rs: ledger_apply_money takes an order''s newest dispute; inspect lists them';
COMMENT ON INDEX disputes_open_idx IS
    'common/src/ledger/status.rs, reconciler/src/support/query.rs: open disputes by evidence due date, for their gauge and alert and the support page';

-- bookkeeping
COMMENT ON INDEX sweep_cursors_pkey IS
    'reconciler/src/sweep/cursors.rs: a sweep''s cursor per object list, saved and resumed';
COMMENT ON INDEX schema_compatibility_pkey IS
    'common/src/db/migrations.rs: the one row that says which builds may run against this schema';
