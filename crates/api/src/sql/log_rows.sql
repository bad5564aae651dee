-- The planner's row estimate of the whole log.
SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::BIGINT
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'log.events'::REGCLASS
