-- Positions only move forward: a re-read of an overlap (a projector started from an earlier
-- offset) leaves the stored high-water mark where it was.
UPDATE read.projection_offsets o
SET position_tx = CASE WHEN (u.tx, u.seq) > (o.position_tx, o.position_seq) THEN u.tx ELSE o.position_tx END,
    position_seq = CASE WHEN (u.tx, u.seq) > (o.position_tx, o.position_seq) THEN u.seq ELSE o.position_seq END,
    events_applied = o.events_applied + u.applied,
    updated_at = now()
FROM unnest($2::INT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[]) AS u (partition, tx, seq, applied)
WHERE o.version = $1
  AND o.partition = u.partition
