-- The largest global_seq handed out so far (0 before the first). Read without a lock: nextval
-- updates the sequence in place, so this sees every value already returned.
SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM log.events_global_seq_seq
