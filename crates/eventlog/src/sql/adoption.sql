-- The adoption of an app's events table: what was adopted, where the history copy stands and
-- the feed's cursor (every new row at or below (cursor_tx, cursor_id, cursor_version) is in
-- log.events), each updated in the transaction that copies the rows it covers.
CREATE TABLE IF NOT EXISTS log.adoption (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    spec JSONB NOT NULL,
    id_type TEXT NOT NULL CHECK (id_type IN ('bigint', 'uuid', 'text')),
    phase TEXT NOT NULL CHECK (phase IN ('history', 'feed')),
    history_rows BIGINT NOT NULL DEFAULT 0,
    cursor_tx BIGINT NOT NULL DEFAULT 0,
    cursor_id TEXT,
    cursor_version INT NOT NULL DEFAULT 0,
    fed_rows BIGINT NOT NULL DEFAULT 0,
    changes_baseline BIGINT NOT NULL DEFAULT 0,
    claimed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    history_done_at TIMESTAMPTZ,
    fed_at TIMESTAMPTZ
);
