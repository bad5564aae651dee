-- A few of PostgreSQL's own figures for this database, cheap to read (statistics views, no scan).
SELECT d.numbackends::BIGINT,
       d.xact_commit,
       d.xact_rollback,
       d.blks_read,
       d.blks_hit,
       d.tup_returned,
       d.tup_inserted,
       d.deadlocks,
       pg_database_size(current_database()),
       coalesce((SELECT extract(EPOCH FROM now() - min(a.xact_start))::DOUBLE PRECISION
                 FROM pg_stat_activity a
                 WHERE a.datname = current_database() AND a.xact_start IS NOT NULL AND a.pid <> pg_backend_pid()), 0)
FROM pg_stat_database d
WHERE d.datname = current_database()
