-- Per version: events held behind a version gap, dead letters, quarantined aggregates.
SELECT p.version,
       (SELECT count(*) FROM read.held_events h WHERE h.version = p.version) AS held_events,
       (SELECT count(*) FROM read.dead_letters d WHERE d.version = p.version) AS dead_letters,
       (SELECT count(*) FROM read.quarantined_aggregates q WHERE q.version = p.version) AS quarantined_aggregates
FROM read.projections p
ORDER BY p.version
