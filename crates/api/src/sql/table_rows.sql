-- The planner's row estimate of a version's table: the sum over its partitions (reltuples is
-- -1 for a partition never vacuumed or analyzed).
SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::BIGINT
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = to_regclass('read.' || quote_ident($1))
