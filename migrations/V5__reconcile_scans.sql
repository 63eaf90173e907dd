-- The windows of Stripe's event history that passes scan, each with how far its scan got, so that
-- a backlog larger than one pass drains across passes instead of being listed from the top again
-- and again. A pass scans the open windows newest first; each page it lists and applies moves the
-- window's cursor (the last event of the page, and its `created`) in the same transaction as the
-- page's writes are committed behind; a window is done when its listing ends.
CREATE TABLE reconcile_scans (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    window_from     timestamptz NOT NULL,
    window_to       timestamptz NOT NULL,
    -- The last event listed and applied (Stripe's `starting_after`), and its `created`.
    cursor          text NULL,
    cursor_created  timestamptz NULL,
    events_seen     bigint NOT NULL DEFAULT 0,
    -- A re-read of RECONCILE_OVERLAP before the end of a window already scanned (for events that
    -- became visible late): scanned after every other open window, so a backlog comes first.
    recheck         boolean NOT NULL DEFAULT false,
    created_by_run  bigint NULL REFERENCES reconcile_runs (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_by_run bigint NULL REFERENCES reconcile_runs (id),
    completed_at    timestamptz NULL,
    CHECK (window_from <= window_to)
);

-- The open windows, in the order passes scan them.
CREATE INDEX reconcile_scans_open_idx ON reconcile_scans (recheck, window_to DESC)
    WHERE completed_at IS NULL;
-- The newest window (where the next one starts).
CREATE INDEX reconcile_scans_window_to_idx ON reconcile_scans (window_to);

-- Orphan adoption runs every pass whatever Stripe answers; the next pass claims from the orders
-- changed since the last adoption that ran.
ALTER TABLE reconcile_runs ADD COLUMN orphans_adopted boolean NOT NULL DEFAULT false;
