-- Why an aggregate with no row in the active version is quarantined (if it is): its first
-- event was dead-lettered, so "unknown" would be a wrong answer.
SELECT global_seq, reason
FROM read.quarantined_aggregates
WHERE version = $1
  AND aggregate_id = $2
