SELECT global_seq, aggregate_id, version, type, ts, payload, tx_id
FROM log.events
WHERE aggregate_id = $1
  AND ts <= $2
  AND global_seq <= $3
ORDER BY version
