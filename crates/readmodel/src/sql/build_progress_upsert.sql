INSERT INTO read.build_progress (version, phase, events_done, events_total, events_per_s, started_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, now())
ON CONFLICT (version) DO UPDATE
SET phase = EXCLUDED.phase,
    events_done = EXCLUDED.events_done,
    events_total = EXCLUDED.events_total,
    events_per_s = EXCLUDED.events_per_s,
    started_at = EXCLUDED.started_at,
    updated_at = EXCLUDED.updated_at
