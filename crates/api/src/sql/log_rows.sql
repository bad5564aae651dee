-- The number of events in the log, estimated per partition the way the planner does: the
-- density measured by the last ANALYZE (reltuples / relpages) times the partition's pages now,
-- so a backfill since then counts. A partition never analyzed is counted exactly while small
-- (under 64 MB) and at 40 rows a page (~200 B rows) above that.
SELECT coalesce(sum(
           CASE
               WHEN c.reltuples > 0 AND c.relpages > 0
                   THEN c.reltuples / c.relpages
                        * (pg_relation_size(c.oid) / current_setting('block_size')::BIGINT)
               WHEN pg_relation_size(c.oid) = 0 THEN 0
               WHEN pg_relation_size(c.oid) < 64 * 1024 * 1024 THEN (
                   xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %s', c.oid::REGCLASS),
                                                       FALSE, TRUE, '')))[1]::TEXT::BIGINT
               ELSE pg_relation_size(c.oid) / current_setting('block_size')::BIGINT * 40
           END), 0)::BIGINT
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'log.events'::REGCLASS
