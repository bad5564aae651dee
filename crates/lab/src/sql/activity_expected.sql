-- The activity read model computed straight from the log, without the fold: one row per
-- aggregate with the columns of read.activity_v1, for the activity test to compare with.
SELECT
    aggregate_id,
    count(*) FILTER (WHERE type = 'deposited') AS deposits,
    coalesce(max((payload ->> 'amount_cents')::BIGINT) FILTER (WHERE type = 'deposited'), 0) AS largest_deposit_cents,
    count(*) FILTER (WHERE type = 'withdrew') AS withdrawals,
    count(*) FILTER (WHERE type = 'fee_charged') AS fees,
    coalesce(sum(coalesce((payload -> 'fee' ->> 'amount_cents')::BIGINT, (payload ->> 'amount_cents')::BIGINT))
        FILTER (WHERE type = 'fee_charged'), 0)::BIGINT AS fee_cents,
    count(*) FILTER (WHERE type IN ('transfer_sent', 'transfer_received')) AS transfers,
    (array_agg(ts ORDER BY version))[1] AS first_event_at,
    (array_agg(ts ORDER BY version DESC))[1] AS last_event_at,
    max(version) AS aggregate_version,
    (array_agg(global_seq ORDER BY version DESC))[1] AS applied_seq
FROM log.events
GROUP BY aggregate_id
