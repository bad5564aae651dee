-- The lab's bookkeeping: what was seeded, and which chunks of it are committed.
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

-- One row per committed chunk, written in the chunk's own transaction.
CREATE TABLE IF NOT EXISTS lab.seed_progress (
    chunk INT PRIMARY KEY,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    tx_id BIGINT NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
