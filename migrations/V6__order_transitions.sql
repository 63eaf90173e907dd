-- Order notifications, a transactional outbox: the ledger inserts one row for every change of an
-- order's status (and, later, of its dispute status) in the same transaction as the change, and
-- nothing else writes here, so there is exactly one row per transition whatever the duplicates,
-- retries and races. The reconciler daemon delivers each row to the app (APP_NOTIFY_URL), one
-- order's rows in id order, at least once; the columns after `created_at` are its delivery state.
--
-- Additive: builds made for V3–V5 keep running against it (they write no rows here; see
-- docs/operations.md, "Upgrades and migrations").
CREATE TABLE order_transitions (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id         uuid NOT NULL REFERENCES orders (id),
    -- The notification's `type`.
    kind             text NOT NULL CHECK (kind IN ('order.paid', 'order.payment_failed',
                         'order.expired', 'order.partially_refunded', 'order.refunded',
                         'order.dispute_opened', 'order.dispute_closed')),
    from_status      text NULL,
    to_status        text NOT NULL,
    -- The event that made the change, and when Stripe created it.
    stripe_event_id  text NOT NULL,
    occurred_at      timestamptz NOT NULL,
    livemode         boolean NOT NULL,
    -- The order as the change left it, as the notification carries it.
    stripe_session_id text NULL,
    amount_total     bigint NULL,
    amount_refunded  bigint NOT NULL DEFAULT 0,
    currency         text NULL,
    dispute_status   text NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Delivery: when it was queued (at creation, again on a redelivery: APP_NOTIFY_MAX_AGE counts
    -- from here), attempts made, when the next may start, and how it ended.
    queued_at        timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz NULL,
    dead_at          timestamptz NULL,
    last_error       text NULL,
    CHECK (delivered_at IS NULL OR dead_at IS NULL)
);

-- The rows to deliver, in the order they fall due.
CREATE INDEX order_transitions_due_idx ON order_transitions (next_attempt_at, id)
    WHERE delivered_at IS NULL AND dead_at IS NULL;
-- One order's rows in order: whether an earlier one is still undelivered, and the timeline.
CREATE INDEX order_transitions_order_idx ON order_transitions (order_id, id);
-- Dead rows, for the alert and for `redeliver --dead`.
CREATE INDEX order_transitions_dead_idx ON order_transitions (dead_at) WHERE dead_at IS NOT NULL;
-- Apps that pull read after a stored cursor (`id`), which the primary key serves.
