-- The expected state of the aggregates a batch opened, in one statement.
INSERT INTO lab.expected_accounts (aggregate_id, owner, currency, status, balance,
    lifetime_deposits, last_activity_at, aggregate_version, applied_seq, v3_bug)
SELECT * FROM unnest($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[],
                     $7::TIMESTAMPTZ[], $8::INT[], $9::BIGINT[], $10::BOOLEAN[])
