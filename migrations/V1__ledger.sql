-- Orders, the Stripe event ledger and the reconciler's run log.

CREATE TABLE orders (
    id                       uuid PRIMARY KEY,
    stripe_session_id        text UNIQUE,
    status                   text NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'paid', 'failed', 'expired', 'refunded')),
    amount_total             bigint NULL,
    currency                 text NULL,
    stripe_payment_intent_id text NULL,
    anomaly                  text NULL,
    paid_at                  timestamptz NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);

-- charge.refunded finds its order by payment intent.
CREATE INDEX orders_stripe_payment_intent_id_idx ON orders (stripe_payment_intent_id)
    WHERE stripe_payment_intent_id IS NOT NULL;

CREATE TABLE payment_events (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stripe_event_id   text NOT NULL UNIQUE,
    event_type        text NOT NULL,
    stripe_object_id  text NULL,
    stripe_session_id text NULL,
    order_id          uuid NULL REFERENCES orders (id),
    livemode          boolean NOT NULL,
    api_version       text NULL,
    stripe_created_at timestamptz NOT NULL,
    payload           jsonb NOT NULL,
    source            text NOT NULL CHECK (source IN ('webhook', 'reconciler', 'manual')),
    request_id        text NULL,
    received_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX payment_events_stripe_session_id_idx ON payment_events (stripe_session_id);
CREATE INDEX payment_events_order_id_idx ON payment_events (order_id);
CREATE INDEX payment_events_request_id_idx ON payment_events (request_id);
-- The reconciler re-links orphans (order_id IS NULL) when their order appears.
CREATE INDEX payment_events_orphans_idx ON payment_events (stripe_created_at)
    WHERE order_id IS NULL;

CREATE TABLE reconcile_runs (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trigger            text NOT NULL CHECK (trigger IN ('schedule', 'manual', 'cli')),
    scope              text NOT NULL CHECK (scope IN ('window', 'session')),
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz NULL,
    window_from        timestamptz NULL,
    window_to          timestamptz NULL,
    stripe_requests    integer NOT NULL DEFAULT 0,
    events_seen        integer NOT NULL DEFAULT 0,
    events_missing     integer NOT NULL DEFAULT 0,
    events_backfilled  integer NOT NULL DEFAULT 0,
    orders_updated     integer NOT NULL DEFAULT 0,
    status             text NOT NULL DEFAULT 'running'
                       CHECK (status IN ('running', 'ok', 'failed', 'skipped')),
    error              text NULL
);

CREATE INDEX reconcile_runs_ok_window_idx ON reconcile_runs (window_to DESC) WHERE status = 'ok';
