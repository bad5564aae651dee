-- The number of events in the log, per partition: the density the last ANALYZE measured
-- (reltuples / relpages) times the partition's pages now, while the partition has not more
-- than doubled since (a backfill since then makes that density stale: a small first sample is
-- no measure of full pages); otherwise counted exactly while the partition is under 64 MB,
-- and above that the measured density if it came from at least 100 pages, else 40 rows a page
-- (~200 B rows).
SELECT coalesce(sum(
           CASE
               WHEN p.pages = 0 THEN 0
               WHEN c.reltuples > 0 AND c.relpages > 0 AND p.pages <= 2 * c.relpages
                   THEN c.reltuples / c.relpages * p.pages
               WHEN p.pages * current_setting('block_size')::BIGINT < 64 * 1024 * 1024 THEN (
                   xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %s', c.oid::REGCLASS),
                                                       FALSE, TRUE, '')))[1]::TEXT::BIGINT
               WHEN c.reltuples > 0 AND c.relpages >= 100 THEN c.reltuples / c.relpages * p.pages
               ELSE p.pages * 40
           END), 0)::BIGINT
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (SELECT pg_relation_size(c.oid) / current_setting('block_size')::BIGINT AS pages) p
WHERE i.inhparent = 'log.events'::REGCLASS
