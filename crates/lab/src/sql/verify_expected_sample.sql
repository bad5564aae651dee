-- Up to five aggregates that differ or are known to differ, with both sides; the unexpected
-- ones (differing but not known, or known but matching) first.
WITH joined AS (
    SELECT coalesce(r.aggregate_id, e.aggregate_id) AS aggregate_id,
           coalesce({expected_filter}, FALSE) AS known,
           (r.aggregate_id IS NULL
            OR e.aggregate_id IS NULL
            OR ({read_columns}) IS DISTINCT FROM ({expected_columns})) AS differs,
           r,
           e
    FROM {table} AS r
    FULL OUTER JOIN lab.expected_accounts AS e ON e.aggregate_id = r.aggregate_id
)
SELECT aggregate_id, known, differs, to_jsonb(r)::TEXT AS read_row, to_jsonb(e)::TEXT AS expected_row
FROM joined
WHERE differs OR known
ORDER BY differs = known, aggregate_id
LIMIT 5
