-- Which builds may run against this schema. A build knows the schema version it was made for
-- (its newest embedded migration); it refuses an older schema, and accepts a newer one only when
-- the newer schema says so here. An additive migration (new tables, new nullable columns, new
-- indexes) leaves `oldest_build_schema` alone, so binaries already running keep working while it
-- is applied and the new binaries roll out. A migration that breaks older builds (a column they
-- write removed or retyped) raises it to its own version, in the same migration.
--
-- V3 changed `payment_events.payload` to `json` with the exact signed bytes: builds made for V2 or
-- earlier must not write to it, so the oldest compatible build is the one made for V3.
CREATE TABLE schema_compatibility (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    oldest_build_schema integer NOT NULL CHECK (oldest_build_schema > 0)
);

INSERT INTO schema_compatibility (oldest_build_schema) VALUES (3);
