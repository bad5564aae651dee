SELECT version, phase, events_done, events_total, events_per_s, started_at, updated_at
FROM read.build_progress
ORDER BY version
