-- $2 values of the sequence named by $1 (the log's global_seq or the lab's aggregate ids).
SELECT array_agg(nextval($1::TEXT::REGCLASS)) FROM generate_series(1, $2::INT)
