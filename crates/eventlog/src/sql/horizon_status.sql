-- The tail boundary (the oldest running xid of the cluster, or the next xid when none runs),
-- the transaction holding it, and whether committed events wait above it. backend_xid is a
-- 32-bit xid: it is matched against the low 32 bits of the 64-bit boundary. Replication slots
-- are not listed: they hold back vacuum (xmin, catalog_xmin), never a running xid, so they
-- cannot hold this boundary.
WITH horizon AS (
    SELECT pg_snapshot_xmin(pg_current_snapshot())::TEXT::BIGINT AS xid
),
holders AS (
    SELECT 'backend' AS kind, pid, datname::TEXT AS database, usename::TEXT AS user_name,
           application_name, state, xact_start AS since, left(query, 200) AS query,
           backend_xid::TEXT::BIGINT AS xid32
    FROM pg_stat_activity
    WHERE backend_xid IS NOT NULL
    UNION ALL
    SELECT 'prepared', NULL, database::TEXT, owner::TEXT, NULL, 'prepared as ' || gid, prepared, NULL,
           transaction::TEXT::BIGINT
    FROM pg_prepared_xacts
)
SELECT horizon.xid,
       EXISTS (SELECT 1 FROM log.events WHERE tx_id > horizon.xid) AS waiting,
       h.kind, h.pid, h.database, h.user_name, h.application_name, h.state, h.since, h.query,
       extract(EPOCH FROM clock_timestamp() - h.since)::FLOAT8 AS age_seconds
FROM horizon
LEFT JOIN holders h ON h.xid32 = horizon.xid % 4294967296
ORDER BY h.since NULLS LAST
LIMIT 1
