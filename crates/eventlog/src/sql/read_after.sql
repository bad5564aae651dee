SELECT global_seq, aggregate_id, version, type, ts, payload, tx_id
FROM log.{partition}
WHERE (tx_id, global_seq) > ($1, $2)
  AND tx_id < $3
ORDER BY tx_id, global_seq
LIMIT $4
