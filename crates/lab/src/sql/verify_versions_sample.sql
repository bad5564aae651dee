-- Up to five differing aggregates with both sides.
WITH ids AS (
    SELECT DISTINCT aggregate_id
    FROM (
        (SELECT {columns} FROM {a} EXCEPT ALL SELECT {columns} FROM {b})
        UNION ALL
        (SELECT {columns} FROM {b} EXCEPT ALL SELECT {columns} FROM {a})
    ) AS d
    ORDER BY aggregate_id
    LIMIT 5
)
SELECT ids.aggregate_id,
       (SELECT to_jsonb(x)::TEXT FROM {a} AS x WHERE x.aggregate_id = ids.aggregate_id) AS a_row,
       (SELECT to_jsonb(y)::TEXT FROM {b} AS y WHERE y.aggregate_id = ids.aggregate_id) AS b_row
FROM ids
ORDER BY ids.aggregate_id
