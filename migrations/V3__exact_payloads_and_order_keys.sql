-- The ledger keeps the exact bytes Stripe signed: `json` stores the text as delivered (jsonb
-- refused some validly signed events, such as a lone surrogate or a number too large, and
-- expanded others on read) and is cheaper to insert. Existing rows keep their jsonb text form.
ALTER TABLE payment_events ALTER COLUMN payload TYPE json USING payload::json;
ALTER TABLE payment_events ALTER COLUMN payload SET COMPRESSION lz4;

-- The keys that find an event's order, extracted when the event is stored, so that orphans (events
-- stored before their order existed) are linked with joins from the orders that appear, never by
-- scanning the orphans.
ALTER TABLE payment_events
    ADD COLUMN client_reference_id uuid NULL,
    ADD COLUMN metadata_order_id uuid NULL,
    ADD COLUMN stripe_payment_intent_id text NULL;

UPDATE payment_events SET
    client_reference_id = CASE WHEN payload -> 'data' -> 'object' ->> 'client_reference_id'
            ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
        THEN (payload -> 'data' -> 'object' ->> 'client_reference_id')::uuid END,
    metadata_order_id = CASE WHEN payload -> 'data' -> 'object' -> 'metadata' ->> 'order_id'
            ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
        THEN (payload -> 'data' -> 'object' -> 'metadata' ->> 'order_id')::uuid END,
    stripe_payment_intent_id = CASE WHEN stripe_session_id IS NULL
        THEN coalesce(payload -> 'data' -> 'object' -> 'payment_intent' ->> 'id',
                      payload -> 'data' -> 'object' ->> 'payment_intent') END
WHERE order_id IS NULL;

CREATE INDEX payment_events_orphan_client_ref_idx ON payment_events (client_reference_id)
    WHERE order_id IS NULL AND client_reference_id IS NOT NULL;
CREATE INDEX payment_events_orphan_metadata_idx ON payment_events (metadata_order_id)
    WHERE order_id IS NULL AND metadata_order_id IS NOT NULL;
CREATE INDEX payment_events_orphan_payment_intent_idx ON payment_events (stripe_payment_intent_id)
    WHERE order_id IS NULL AND stripe_payment_intent_id IS NOT NULL;
-- Orphans were scanned oldest first through this index; they no longer are.
DROP INDEX payment_events_orphans_idx;

-- Orders that appeared or changed since a pass are where orphans can find their order.
CREATE INDEX orders_updated_at_idx ON orders (updated_at);

-- An app that sets the session id on an existing order marks it changed (the ledger's own updates
-- set updated_at themselves).
CREATE FUNCTION orders_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER orders_keys_changed BEFORE UPDATE OF stripe_session_id
    ON orders FOR EACH ROW EXECUTE FUNCTION orders_keys_changed();

-- Replicas of the reconciler share each scheduled tick: a pass records the tick it belongs to, and
-- a replica that finds the tick's pass already done records itself skipped.
ALTER TABLE reconcile_runs ADD COLUMN tick_at timestamptz NULL;
CREATE INDEX reconcile_runs_tick_idx ON reconcile_runs (tick_at) WHERE tick_at IS NOT NULL;
