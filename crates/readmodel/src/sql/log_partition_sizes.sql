-- Each log partition's row count as the statistics know it, without scanning: the planner's
-- estimate (-1 before the first ANALYZE) or the live-tuple count kept by the statistics
-- system, whichever is larger.
SELECT c.relname::TEXT, greatest(c.reltuples::BIGINT, coalesce(s.n_live_tup, 0), 0)
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE i.inhparent = 'log.events'::REGCLASS
