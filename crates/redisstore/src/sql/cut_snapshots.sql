-- Snapshots of a fold at one consistent cut: per log partition, every aggregate's row as of
-- the cut (the events of transactions below it), the marks of aggregates with no state yet,
-- and the events held at the cut (read before a predecessor above it). A store rebuilt from
-- a cut starts from these and reads the log after it.
CREATE TABLE IF NOT EXISTS read.cut_snapshots (
    fold TEXT NOT NULL,
    cut BIGINT NOT NULL,
    partition INT NOT NULL,
    rows JSONB NOT NULL,
    marks JSONB NOT NULL,
    held JSONB NOT NULL,
    taken_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (fold, cut, partition)
);
