-- The lab's bookkeeping: what was seeded, and which parts of its chunks are committed.
CREATE SCHEMA IF NOT EXISTS lab;

-- The parameters of the seeded log; a rerun with other parameters is refused.
CREATE TABLE IF NOT EXISTS lab.seed_params (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    events BIGINT NOT NULL,
    aggregates BIGINT NOT NULL,
    seed BIGINT NOT NULL,
    zipf DOUBLE PRECISION NOT NULL,
    partitions INT NOT NULL,
    chunk_events BIGINT NOT NULL,
    generator TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at TIMESTAMPTZ
);

-- One row per partition of each committed chunk (its events in that partition), written in
-- the transaction that loaded them: a loader's share of a chunk, the partitions it owns.
CREATE TABLE IF NOT EXISTS lab.seed_progress (
    chunk INT NOT NULL,
    partition INT NOT NULL,
    events BIGINT NOT NULL,
    tx_id BIGINT NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chunk, partition)
);
