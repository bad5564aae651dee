-- Built after a bulk load (faster than maintaining them row by row), and idempotent.
ALTER TABLE log.events ADD CONSTRAINT events_aggregate_version_key UNIQUE (aggregate_id, version);
CREATE UNIQUE INDEX events_position_key ON log.events (tx_id, global_seq, aggregate_id);
