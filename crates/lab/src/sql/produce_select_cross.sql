-- The expected state of a batch's cross-range transfers, locked so that no other writer moves
-- them before this transaction commits; a row another writer's open transaction holds is
-- skipped, never waited for (the transfer is dropped as a conflict).
SELECT aggregate_id, currency, status, balance, lifetime_deposits, last_activity_at,
       aggregate_version, applied_seq, v3_bug
FROM lab.expected_accounts
WHERE aggregate_id = ANY($1::BIGINT[])
ORDER BY aggregate_id
FOR UPDATE SKIP LOCKED
