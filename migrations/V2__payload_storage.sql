-- Ledger payloads: Checkout Session events are 3–5 KB of JSON. With the defaults, every insert
-- compressed the payload with pglz (about a quarter of Postgres's CPU per event, measured with
-- perf) and then still moved it out of line to TOAST. lz4 compresses several times faster, and a
-- 4 KB tuple target keeps typical events inline in the heap page.
ALTER TABLE payment_events ALTER COLUMN payload SET COMPRESSION lz4;
ALTER TABLE payment_events SET (toast_tuple_target = 4080);
