-- Forget version v4 entirely (its rows, positions, held events and registration), so that a
-- benchmark script can replay it again from offset 0 on the same log.
DELETE FROM read.held_events WHERE version = 'v4';
DELETE FROM read.dead_letters WHERE version = 'v4';
DELETE FROM read.quarantined_aggregates WHERE version = 'v4';
DELETE FROM read.build_progress WHERE version = 'v4';
DELETE FROM read.projection_offsets WHERE version = 'v4';
DELETE FROM read.projections WHERE version = 'v4';
DROP TABLE IF EXISTS read.accounts_v4;
