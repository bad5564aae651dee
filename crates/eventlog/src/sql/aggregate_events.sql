SELECT global_seq, aggregate_id, version, type, ts, payload, tx_id
FROM log.events
WHERE aggregate_id = $1
  AND version > $2
  AND version <= $5
  AND ts <= $3
  AND global_seq <= $4
ORDER BY version
