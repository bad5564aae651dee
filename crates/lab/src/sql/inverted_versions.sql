-- Events whose next version precedes them in the tailers' (tx_id, global_seq) order: the
-- out-of-order case a transfer's two-aggregate transaction causes, which the guard must hold.
SELECT count(*)
FROM log.events AS a
JOIN log.events AS b ON b.aggregate_id = a.aggregate_id AND b.version = a.version + 1
WHERE (b.tx_id, b.global_seq) < (a.tx_id, a.global_seq)
