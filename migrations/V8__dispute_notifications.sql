-- Every change of `orders.dispute_status` is an order notification, as every change of
-- `orders.status` is: V7 notified a dispute's opening and its closing only, and a move between two
-- open statuses (needs_response → under_review) changed the order without a notification. Now such a
-- move is an `order.dispute_opened` carrying the new `dispute_status`. Only the function changes:
-- additive, V7 builds keep running (and get the rows too).

-- Applies the refund, dispute and charge snapshots of a batch's events to their (locked) orders,
-- in order, and settles orders that were just paid with refunds already known ('settle'). Each
-- element: the order, the event (id, created, livemode), the snapshot's kind and fields, and
-- whether it may move the order's status (false when the order was not paid yet at that point of
-- the batch: the paying event's 'settle' moves it then, as one transaction per event would). Writes
-- the rows, the orders' money columns and status, and one outbox row per change of status or of
-- the dispute's open/closed state; returns each status change.
CREATE OR REPLACE FUNCTION ledger_apply_money(
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
