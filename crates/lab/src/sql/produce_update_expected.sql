-- Moves each aggregate of a batch from the version it was read at ("before") to its new state,
-- in one statement. A row that moved meanwhile is not updated: the caller compares the count.
UPDATE lab.expected_accounts AS e
SET status = u.status, balance = u.balance, lifetime_deposits = u.lifetime_deposits,
    last_activity_at = u.last_activity_at, aggregate_version = u.version,
    applied_seq = u.applied_seq, v3_bug = u.v3_bug
FROM unnest($1::BIGINT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[], $5::TIMESTAMPTZ[], $6::INT[],
            $7::BIGINT[], $8::BOOLEAN[], $9::INT[])
    AS u(aggregate_id, status, balance, lifetime_deposits, last_activity_at, version, applied_seq,
         v3_bug, before)
WHERE e.aggregate_id = u.aggregate_id AND e.aggregate_version = u.before
