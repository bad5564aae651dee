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
-- The type of the log's stream ids when the version was registered (bigint, uuid or text): its
-- table's aggregate_id column has it, and the read function casts a requested id to it.
ALTER TABLE read.projections ADD COLUMN IF NOT EXISTS id_type TEXT NOT NULL DEFAULT 'bigint';
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
-- The bookkeeping tables below keep stream ids as text, whatever the log's id type.
CREATE TABLE IF NOT EXISTS read.held_events (
    version TEXT NOT NULL REFERENCES read.projections (version),
    partition INT NOT NULL,
    aggregate_id TEXT NOT NULL,
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
    aggregate_id TEXT NOT NULL,
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
    aggregate_id TEXT NOT NULL,
    global_seq BIGINT NOT NULL,
    reason TEXT NOT NULL,
    quarantined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (version, aggregate_id)
);

-- Aggregates with no row because every event of theirs so far is of a type the version's
-- projection does not know (skipped): how far the guard has counted, so their next version is
-- known. Written with the rows (same transaction), removed when a row appears.
CREATE TABLE IF NOT EXISTS read.untracked_aggregates (
    version TEXT NOT NULL REFERENCES read.projections (version),
    partition INT NOT NULL,
    aggregate_id TEXT NOT NULL,
    aggregate_version INT NOT NULL,
    applied_seq BIGINT NOT NULL,
    PRIMARY KEY (version, aggregate_id)
);
CREATE INDEX IF NOT EXISTS untracked_aggregates_partition ON read.untracked_aggregates (version, partition);

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
-- The id arrives as text and is cast to the version's id type (the caller has parsed it as one).
DROP FUNCTION IF EXISTS read.current_row(TEXT, BIGINT);
CREATE OR REPLACE FUNCTION read.current_row(p_family TEXT, p_aggregate_id TEXT)
RETURNS TABLE (projection_version TEXT, quarantined BOOLEAN, row_json JSONB)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_version TEXT;
    v_table TEXT;
    v_id_type TEXT;
BEGIN
    SELECT p.version, p.table_name, p.id_type INTO v_version, v_table, v_id_type
    FROM read.projections p
    WHERE p.state = 'active' AND p.family = p_family;
    IF v_version IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT $1, EXISTS (SELECT 1 FROM read.quarantined_aggregates q '
        'WHERE q.version = $1 AND q.aggregate_id = $2), to_jsonb(a) '
        'FROM read.%I a WHERE a.aggregate_id = $2::%s', v_table,
        CASE v_id_type WHEN 'uuid' THEN 'uuid' WHEN 'text' THEN 'text' ELSE 'bigint' END)
    USING v_version, p_aggregate_id;
    IF NOT FOUND THEN
        projection_version := v_version;
        quarantined := FALSE;
        row_json := NULL;
        RETURN NEXT;
    END IF;
END
$$;

-- The family a read names implicitly: the one family with an active version. Several active
-- families and no name is the client's ambiguity: SQLSTATE RPJ01, naming them; none: NULL.
CREATE OR REPLACE FUNCTION read.only_active_family()
RETURNS TEXT
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_families TEXT[];
BEGIN
    SELECT array_agg(DISTINCT p.family ORDER BY p.family) INTO v_families
    FROM read.projections p WHERE p.state = 'active';
    IF coalesce(array_length(v_families, 1), 0) > 1 THEN
        RAISE EXCEPTION 'several read models are served here (%): name one with ?family=',
            array_to_string(v_families, ', ') USING ERRCODE = 'RPJ01';
    END IF;
    RETURN v_families[1];
END
$$;

-- The bank's read path as it was before families: `accounts` only.
CREATE OR REPLACE FUNCTION read.current_account(p_aggregate_id BIGINT)
RETURNS TABLE (projection_version TEXT, quarantined BOOLEAN, account JSONB)
LANGUAGE sql STABLE AS $$
    SELECT * FROM read.current_row('accounts', p_aggregate_id::TEXT)
$$;

-- Aggregate snapshots for time travel: the state a fold reaches after versions 1..version of an
-- aggregate. max_seq / max_ts are the largest global_seq / ts among those events, so a cut
-- (ts, offset) may start from a snapshot only when it contains all of them. Derived from the
-- append-only log and immutable: versions 1..version can never change once present.
CREATE TABLE IF NOT EXISTS read.aggregate_snapshots (
    fold TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    version INT NOT NULL CHECK (version >= 1),
    max_seq BIGINT NOT NULL,
    max_ts TIMESTAMPTZ NOT NULL,
    state JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (fold, aggregate_id, version)
);

-- A read schema created when stream ids could only be bigint keeps them as text from now on.
DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['held_events', 'dead_letters', 'quarantined_aggregates', 'aggregate_snapshots'] LOOP
        IF (SELECT data_type FROM information_schema.columns
            WHERE table_schema = 'read' AND table_name = t AND column_name = 'aggregate_id') = 'bigint' THEN
            EXECUTE format('ALTER TABLE read.%I ALTER COLUMN aggregate_id TYPE TEXT USING aggregate_id::TEXT', t);
        END IF;
    END LOOP;
END
$$;
