-- The peer's own database: a ledger and orders, as the usual tutorial has them. The load
-- generator (`loadgen --schema peer`) fills `orders` with the sessions it is about to pay.
SET client_min_messages = warning;
DROP TABLE IF EXISTS payment_events;
DROP TABLE IF EXISTS orders;

CREATE TABLE payment_events (
  stripe_event_id   text UNIQUE,
  type              text,
  stripe_session_id text,
  payload           jsonb,
  received_at       timestamptz DEFAULT now()
);

CREATE TABLE orders (
  id                bigserial PRIMARY KEY,
  stripe_session_id text NOT NULL,
  amount_cents      integer NOT NULL DEFAULT 2000,
  currency          text NOT NULL DEFAULT 'eur',
  status            text NOT NULL DEFAULT 'pending',
  created_at        timestamptz NOT NULL DEFAULT now(),
  paid_at           timestamptz
);

CREATE INDEX orders_stripe_session_id_idx ON orders (stripe_session_id);
