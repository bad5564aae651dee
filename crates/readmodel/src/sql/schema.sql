-- The read side's bookkeeping. Idempotent; run under an advisory lock so concurrent starters
-- do not race on CREATE ... IF NOT EXISTS.
CREATE SCHEMA IF NOT EXISTS read;

-- One row per projection version. Versions of one family (one read model: `accounts`,
-- `activity`) replace one another; at most one per family is active, and the API reads that one.
CREATE TABLE IF NOT EXISTS read.projections (
    version TEXT PRIMARY KEY,
    family TEXT NOT NULL DEFAULT 'accounts',
    state TEXT NOT NULL CHECK (state IN ('building', 'ready', 'active', 'retired')),
    table_name TEXT NOT NULL UNIQUE,
    partitions INT NOT NULL,
    bulk_boundary BIGINT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ready_at TIMESTAMPTZ,
    activated_at TIMESTAMPTZ,
    retired_at TIMESTAMPTZ,
    cutover JSONB
);

-- A registry created before families existed held only `accounts` versions.
ALTER TABLE read.projections ADD COLUMN IF NOT EXISTS family TEXT NOT NULL DEFAULT 'accounts';
-- The log a version is folded from: `postgres` (the event store) or a Kafka topic's address.
-- Its positions mean xids in one and offsets in the other, so a version keeps its log, and a
-- cutover only compares versions of one log.
ALTER TABLE read.projections ADD COLUMN IF NOT EXISTS log_source TEXT NOT NULL DEFAULT 'postgres';
DROP INDEX IF EXISTS read.projections_one_active;
CREATE UNIQUE INDEX IF NOT EXISTS projections_one_active_per_family ON read.projections (family)
    WHERE state = 'active';

-- Each partition's high-water mark, written in the same transaction as the rows it covers.
CREATE TABLE IF NOT EXISTS read.projection_offsets (
    version TEXT NOT NULL REFERENCES read.projections (version),
    partition INT NOT NULL,
    position_tx BIGINT NOT NULL,
    position_seq BIGINT NOT NULL,
    events_applied BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (version, partition)
);

-- Events read past their position but waiting for an earlier version of their aggregate.
-- Persisted with the batch so that a crash never loses an event the position has passed.
CREATE TABLE IF NOT EXISTS read.held_events (
    version TEXT NOT NULL REFERENCES read.projections (version),
    partition INT NOT NULL,
    aggregate_id BIGINT NOT NULL,
    aggregate_version INT NOT NULL,
    global_seq BIGINT NOT NULL,
    tx_id BIGINT NOT NULL,
    type TEXT NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    payload JSONB NOT NULL,
    PRIMARY KEY (version, aggregate_id, aggregate_version)
);

-- Events a projector could not fold (with --quarantine), kept for a human.
CREATE TABLE IF NOT EXISTS read.dead_letters (
    version TEXT NOT NULL REFERENCES read.projections (version),
    global_seq BIGINT NOT NULL,
    partition INT NOT NULL,
    aggregate_id BIGINT NOT NULL,
    aggregate_version INT NOT NULL,
    type TEXT NOT NULL,
    payload JSONB NOT NULL,
    error TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (version, global_seq)
);

-- Aggregates whose row must not be served as correct: an event of theirs was dead-lettered.
CREATE TABLE IF NOT EXISTS read.quarantined_aggregates (
    version TEXT NOT NULL REFERENCES read.projections (version),
    aggregate_id BIGINT NOT NULL,
    global_seq BIGINT NOT NULL,
    reason TEXT NOT NULL,
    quarantined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (version, aggregate_id)
);

-- A replay's progress, as its bulk phase measured it (one row per version, overwritten about
-- once a second): what `projections` and `GET /projections` show for a version still building,
-- with an expected completion time.
CREATE TABLE IF NOT EXISTS read.build_progress (
    version TEXT PRIMARY KEY REFERENCES read.projections (version),
    phase TEXT NOT NULL CHECK (phase IN ('bulk', 'catch_up')),
    events_done BIGINT NOT NULL,
    events_total BIGINT NOT NULL,
    events_per_s DOUBLE PRECISION NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The read path: resolve the family's active version and read the row in one statement. A
-- STABLE function runs its queries on the calling statement's snapshot, so the registry row and
-- the aggregate's row come from the same instant: either before a cutover commits (old version,
-- a complete table) or after (new version, complete since it was marked ready).
CREATE OR REPLACE FUNCTION read.current_row(p_family TEXT, p_aggregate_id BIGINT)
RETURNS TABLE (projection_version TEXT, quarantined BOOLEAN, row_json JSONB)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_version TEXT;
    v_table TEXT;
BEGIN
    SELECT p.version, p.table_name INTO v_version, v_table
    FROM read.projections p
    WHERE p.state = 'active' AND p.family = p_family;
    IF v_version IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT $1, EXISTS (SELECT 1 FROM read.quarantined_aggregates q '
        'WHERE q.version = $1 AND q.aggregate_id = $2), to_jsonb(a) '
        'FROM read.%I a WHERE a.aggregate_id = $2', v_table)
    USING v_version, p_aggregate_id;
    IF NOT FOUND THEN
        projection_version := v_version;
        quarantined := FALSE;
        row_json := NULL;
        RETURN NEXT;
    END IF;
END
$$;

-- The bank's read path as it was before families: `accounts` only.
CREATE OR REPLACE FUNCTION read.current_account(p_aggregate_id BIGINT)
RETURNS TABLE (projection_version TEXT, quarantined BOOLEAN, account JSONB)
LANGUAGE sql STABLE AS $$
    SELECT * FROM read.current_row('accounts', p_aggregate_id)
$$;

-- Aggregate snapshots for time travel: the state a fold reaches after versions 1..version of an
-- aggregate. max_seq / max_ts are the largest global_seq / ts among those events, so a cut
-- (ts, offset) may start from a snapshot only when it contains all of them. Derived from the
-- append-only log and immutable: versions 1..version can never change once present.
CREATE TABLE IF NOT EXISTS read.aggregate_snapshots (
    fold TEXT NOT NULL,
    aggregate_id BIGINT NOT NULL,
    version INT NOT NULL CHECK (version >= 1),
    max_seq BIGINT NOT NULL,
    max_ts TIMESTAMPTZ NOT NULL,
    state JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (fold, aggregate_id, version)
);
