-- The generator's true final state of every aggregate, rewritten whole at the end of a seed
-- and kept current by the producer in the same transaction as each append.
DROP TABLE IF EXISTS lab.expected_accounts;
CREATE TABLE lab.expected_accounts (
    aggregate_id BIGINT NOT NULL,
    owner TEXT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    balance BIGINT NOT NULL,
    lifetime_deposits BIGINT NOT NULL,
    last_activity_at TIMESTAMPTZ NOT NULL,
    aggregate_version INT NOT NULL,
    applied_seq BIGINT NOT NULL,
    v3_bug BOOLEAN NOT NULL
);
