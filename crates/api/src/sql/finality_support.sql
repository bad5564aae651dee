-- Whether the log allows final offsets: the sequence hands out one value at a time (no
-- per-session cache that could give a small value out after a larger one was observed), and
-- global_seq's default takes the transaction's xid before its sequence value.
SELECT s.cache_size, pg_get_expr(d.adbin, d.adrelid)
FROM pg_sequences s, pg_attrdef d
JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
WHERE s.schemaname = 'log'
  AND s.sequencename = 'events_global_seq_seq'
  AND d.adrelid = 'log.events'::REGCLASS
  AND a.attname = 'global_seq'
