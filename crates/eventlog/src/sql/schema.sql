-- The event log: append-only, hash-partitioned by aggregate_id. Partitions and indexes are
-- created by code (their count is chosen when the log is created).
CREATE SCHEMA log;

-- id_type is the type of the stream ids (bigint, uuid or text): every id read from a flag, a
-- path or JSON is parsed as one (a log created before it existed is bigint).
CREATE TABLE log.meta (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    partitions INT NOT NULL CHECK (partitions BETWEEN 1 AND 1024),
    id_type TEXT NOT NULL DEFAULT 'bigint' CHECK (id_type IN ('bigint', 'uuid', 'text')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE SEQUENCE log.events_global_seq_seq AS BIGINT;

-- tx_id is the writing transaction's xid8 (as bigint): tailers read only below the oldest
-- transaction still running, so a row can never appear behind a saved position.
-- global_seq's default takes the transaction's xid before the sequence value (CASE evaluates
-- its condition first), so a transaction always holds its xid before any global_seq it takes:
-- time travel's finality argument rests on it (ARCHITECTURE.md, "Final cuts").
CREATE TABLE log.events (
    global_seq BIGINT NOT NULL
        DEFAULT (CASE WHEN pg_current_xact_id() IS NOT NULL THEN nextval('log.events_global_seq_seq') END),
    aggregate_id {id_type} NOT NULL,
    version INT NOT NULL CHECK (version >= 1),
    type TEXT NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    payload JSONB NOT NULL,
    tx_id BIGINT NOT NULL DEFAULT (pg_current_xact_id()::TEXT::BIGINT)
) PARTITION BY HASH (aggregate_id);

ALTER SEQUENCE log.events_global_seq_seq OWNED BY log.events.global_seq;

-- Append-only: nothing in the product updates, deletes or truncates an event.
CREATE FUNCTION log.reject_change() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'log.events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON log.events
    FOR EACH ROW EXECUTE FUNCTION log.reject_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON log.events
    FOR EACH STATEMENT EXECUTE FUNCTION log.reject_change();
