-- The expected state of a batch's aggregates, read without a lock (optimistic concurrency:
-- the guarded update and the log's unique (aggregate_id, version) catch a lost race).
SELECT aggregate_id, currency, status, balance, lifetime_deposits, last_activity_at,
       aggregate_version, applied_seq, v3_bug
FROM lab.expected_accounts
WHERE aggregate_id = ANY($1::BIGINT[])
