-- A batch of events in one statement. global_seq values were taken from the log's sequence
-- by the producer; tx_id is the column's default, the writing transaction's id.
INSERT INTO log.events (global_seq, aggregate_id, version, type, ts, payload)
SELECT u.global_seq, u.aggregate_id, u.version, u.type, u.ts, u.payload::JSONB
FROM unnest($1::BIGINT[], $2::BIGINT[], $3::INT[], $4::TEXT[], $5::TIMESTAMPTZ[], $6::TEXT[])
    AS u(global_seq, aggregate_id, version, type, ts, payload)
