-- Money after the payment: refunds and disputes on the order, and the object-level sweep.
--
-- Each refund (`re_…`) and dispute (`du_…`/`dp_…`) is one row holding its latest known state: the
-- `created` of the event that last changed it is kept, and an older snapshot never overwrites a
-- newer one (ties: the status further along wins), so their events may arrive in any order, any
-- number of times. `orders.amount_refunded` is the sum of the order's succeeded refunds (or the
-- charge's own `amount_refunded` when the newest snapshot is a charge's, for API versions that
-- send `charge.refunded` without the refunds), and moves the order between `paid`,
-- `partially_refunded` and `refunded`; `orders.dispute_status` is the status of its newest dispute,
-- and every change of it is an order notification. Both are written only by `ledger_apply_money` below, which the ledger calls in the same
-- transaction as the events, with the order row already locked.
--
-- Not additive for older builds: a build made for V6 would read `partially_refunded` as an unknown
-- status, so this migration makes 7 the oldest build schema (older builds refuse to start; see
-- docs/operations.md, "Upgrades and migrations").

ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('pending', 'paid', 'failed', 'expired', 'partially_refunded', 'refunded'));
ALTER TABLE orders
    ADD COLUMN amount_refunded bigint NOT NULL DEFAULT 0,
    ADD COLUMN dispute_status text NULL,
    -- The newest `charge.refunded` snapshot: the charge's `amount_refunded` and the event's time.
    ADD COLUMN charge_amount_refunded bigint NULL,
    ADD COLUMN charge_refunds_at timestamptz NULL;

CREATE TABLE refunds (
    id                text PRIMARY KEY,
    order_id          uuid NOT NULL REFERENCES orders (id),
    payment_intent    text NULL,
    charge            text NULL,
    amount            bigint NOT NULL,
    currency          text NULL,
    status            text NOT NULL,
    -- The event whose snapshot this row holds, and its `created`.
    stripe_event_id   text NOT NULL,
    stripe_created_at timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_order_idx ON refunds (order_id);

CREATE TABLE disputes (
    id                text PRIMARY KEY,
    order_id          uuid NOT NULL REFERENCES orders (id),
    payment_intent    text NULL,
    charge            text NULL,
    amount            bigint NULL,
    currency          text NULL,
    reason            text NULL,
    status            text NOT NULL,
    evidence_due_by   timestamptz NULL,
    stripe_event_id   text NOT NULL,
    stripe_created_at timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX disputes_order_idx ON disputes (order_id);
-- Open disputes, for the alert and the support page.
CREATE INDEX disputes_open_idx ON disputes (evidence_due_by)
    WHERE status IN ('warning_needs_response', 'needs_response', 'warning_under_review', 'under_review');

-- A sweep's rows: synthetic ids `sweep:<object id>:<state>`, the object's exact bytes as payload.
ALTER TABLE payment_events DROP CONSTRAINT payment_events_source_check;
ALTER TABLE payment_events ADD CONSTRAINT payment_events_source_check
    CHECK (source IN ('webhook', 'reconciler', 'manual', 'sweep'));
ALTER TABLE reconcile_runs DROP CONSTRAINT reconcile_runs_scope_check;
ALTER TABLE reconcile_runs ADD CONSTRAINT reconcile_runs_scope_check
    CHECK (scope IN ('window', 'session', 'sweep'));

-- Where a sweep got to: one row per object list, its window and the last object applied, so that
-- a sweep that fails resumes there.
CREATE TABLE sweep_cursors (
    list          text PRIMARY KEY CHECK (list IN ('checkout_sessions', 'refunds', 'disputes')),
    window_from   timestamptz NOT NULL,
    window_to     timestamptz NOT NULL,
    cursor        text NULL,
    completed_at  timestamptz NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

UPDATE schema_compatibility SET oldest_build_schema = 7;

-- How far along a refund's status is: a later status wins over an earlier one of the same time.
CREATE FUNCTION ledger_refund_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE status
        WHEN 'pending' THEN 1 WHEN 'requires_action' THEN 1
        WHEN 'succeeded' THEN 2
        WHEN 'failed' THEN 3 WHEN 'canceled' THEN 3
        ELSE 0 END
$$;

-- How far along a dispute's status is.
CREATE FUNCTION ledger_dispute_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE status
        WHEN 'warning_needs_response' THEN 1 WHEN 'needs_response' THEN 1
        WHEN 'warning_under_review' THEN 2 WHEN 'under_review' THEN 2
        WHEN 'warning_closed' THEN 3 WHEN 'won' THEN 3 WHEN 'lost' THEN 3 WHEN 'prevented' THEN 3
        ELSE 0 END
$$;

-- Applies the refund, dispute and charge snapshots of a batch's events to their (locked) orders,
-- in order, and settles orders that were just paid with refunds already known ('settle'). Each
-- element: the order, the event (id, created, livemode), the snapshot's kind and fields, and
-- whether it may move the order's status (false when the order was not paid yet at that point of
-- the batch: the paying event's 'settle' moves it then, as one transaction per event would). Writes
-- the rows, the orders' money columns and status, and one outbox row per change of status or of
-- dispute status; returns each status change.
CREATE FUNCTION ledger_apply_money(
    p_order uuid[], p_event text[], p_occurred timestamptz[], p_livemode boolean[],
    p_kind text[], p_object text[], p_status text[], p_amount bigint[], p_currency text[],
    p_payment_intent text[], p_charge text[], p_reason text[], p_due_by timestamptz[],
    p_charge_refunded bigint[], p_moves boolean[])
RETURNS TABLE (changed_event text, changed_from text, changed_to text)
LANGUAGE plpgsql AS $$
DECLARE
    o orders%ROWTYPE;
    refunded bigint;
    newest_refund timestamptz;
    dispute text;
    next_status text;
    dispute_kind text;
    notify boolean := false;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_order, 1), 0) LOOP
        IF p_kind[i] = 'refund' THEN
            INSERT INTO refunds AS r (id, order_id, payment_intent, charge, amount, currency, status,
                stripe_event_id, stripe_created_at)
            VALUES (p_object[i], p_order[i], p_payment_intent[i], p_charge[i],
                coalesce(p_amount[i], 0), p_currency[i], p_status[i], p_event[i], p_occurred[i])
            ON CONFLICT (id) DO UPDATE SET
                order_id = EXCLUDED.order_id,
                payment_intent = coalesce(EXCLUDED.payment_intent, r.payment_intent),
                charge = coalesce(EXCLUDED.charge, r.charge),
                amount = EXCLUDED.amount,
                currency = coalesce(EXCLUDED.currency, r.currency),
                status = EXCLUDED.status,
                stripe_event_id = EXCLUDED.stripe_event_id,
                stripe_created_at = EXCLUDED.stripe_created_at,
                updated_at = now()
            WHERE (EXCLUDED.stripe_created_at, ledger_refund_rank(EXCLUDED.status), EXCLUDED.stripe_event_id)
                > (r.stripe_created_at, ledger_refund_rank(r.status), r.stripe_event_id);
        ELSIF p_kind[i] = 'dispute' THEN
            INSERT INTO disputes AS d (id, order_id, payment_intent, charge, amount, currency, reason,
                status, evidence_due_by, stripe_event_id, stripe_created_at)
            VALUES (p_object[i], p_order[i], p_payment_intent[i], p_charge[i], p_amount[i],
                p_currency[i], p_reason[i], p_status[i], p_due_by[i], p_event[i], p_occurred[i])
            ON CONFLICT (id) DO UPDATE SET
                order_id = EXCLUDED.order_id,
                payment_intent = coalesce(EXCLUDED.payment_intent, d.payment_intent),
                charge = coalesce(EXCLUDED.charge, d.charge),
                amount = coalesce(EXCLUDED.amount, d.amount),
                currency = coalesce(EXCLUDED.currency, d.currency),
                reason = coalesce(EXCLUDED.reason, d.reason),
                status = EXCLUDED.status,
                evidence_due_by = coalesce(EXCLUDED.evidence_due_by, d.evidence_due_by),
                stripe_event_id = EXCLUDED.stripe_event_id,
                stripe_created_at = EXCLUDED.stripe_created_at,
                updated_at = now()
            WHERE (EXCLUDED.stripe_created_at, ledger_dispute_rank(EXCLUDED.status), EXCLUDED.stripe_event_id)
                > (d.stripe_created_at, ledger_dispute_rank(d.status), d.stripe_event_id);
        ELSIF p_kind[i] = 'charge' THEN
            UPDATE orders SET
                charge_amount_refunded = p_charge_refunded[i],
                charge_refunds_at = p_occurred[i]
            WHERE id = p_order[i]
              AND (charge_refunds_at IS NULL
                   OR (charge_refunds_at, charge_amount_refunded) < (p_occurred[i], p_charge_refunded[i]));
            -- A paid order that never said what it expects (nor what it was paid, by an older
            -- build) is refunded in full at the charge's amount.
            UPDATE orders SET amount_total = p_amount[i], currency = coalesce(currency, p_currency[i])
            WHERE id = p_order[i] AND amount_total IS NULL AND p_amount[i] IS NOT NULL
              AND p_moves[i];
        END IF;

        SELECT * INTO o FROM orders WHERE id = p_order[i];
        CONTINUE WHEN NOT FOUND;
        SELECT coalesce(sum(r.amount) FILTER (WHERE r.status = 'succeeded'), 0), max(r.stripe_created_at)
            INTO refunded, newest_refund
            FROM refunds AS r WHERE r.order_id = o.id;
        IF o.charge_refunds_at IS NOT NULL
           AND (newest_refund IS NULL OR o.charge_refunds_at >= newest_refund) THEN
            refunded := greatest(refunded, o.charge_amount_refunded);
        END IF;
        dispute := (SELECT d.status FROM disputes AS d WHERE d.order_id = o.id
                    ORDER BY d.stripe_created_at DESC, d.id DESC LIMIT 1);
        next_status := CASE
            WHEN NOT p_moves[i] OR o.status NOT IN ('paid', 'partially_refunded', 'refunded')
                THEN o.status
            WHEN refunded <= 0 THEN 'paid'
            WHEN o.amount_total IS NOT NULL AND refunded >= o.amount_total THEN 'refunded'
            ELSE 'partially_refunded' END;
        IF (o.amount_refunded, o.dispute_status, o.status) IS DISTINCT FROM (refunded, dispute, next_status) THEN
            UPDATE orders SET amount_refunded = refunded, dispute_status = dispute,
                status = next_status, updated_at = now()
            WHERE id = o.id;
        END IF;
        IF next_status <> o.status THEN
            INSERT INTO order_transitions (order_id, kind, from_status, to_status, stripe_event_id,
                occurred_at, livemode, stripe_session_id, amount_total, amount_refunded, currency,
                dispute_status)
            VALUES (o.id, CASE next_status WHEN 'refunded' THEN 'order.refunded'
                              ELSE 'order.partially_refunded' END,
                o.status, next_status, p_event[i], p_occurred[i], p_livemode[i],
                o.stripe_session_id, o.amount_total, refunded, o.currency, dispute);
            notify := true;
            changed_event := p_event[i];
            changed_from := o.status;
            changed_to := next_status;
            RETURN NEXT;
        END IF;
        IF dispute IS DISTINCT FROM o.dispute_status THEN
            -- Every change of the dispute's status is one row: closed (won, lost, …), or open in
            -- its new status (needs_response, then under_review, …).
            dispute_kind := CASE WHEN ledger_dispute_rank(dispute) = 3 THEN 'order.dispute_closed'
                                 ELSE 'order.dispute_opened' END;
            INSERT INTO order_transitions (order_id, kind, from_status, to_status,
                stripe_event_id, occurred_at, livemode, stripe_session_id, amount_total,
                amount_refunded, currency, dispute_status)
            VALUES (o.id, dispute_kind, next_status, next_status, p_event[i], p_occurred[i],
                p_livemode[i], o.stripe_session_id, o.amount_total, refunded, o.currency, dispute);
            notify := true;
        END IF;
    END LOOP;
    IF notify THEN
        PERFORM pg_notify('order_transitions', '');
    END IF;
END
$$;
