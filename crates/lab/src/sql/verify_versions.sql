-- Two read-model versions on their common columns: the rows of each that the other lacks.
-- Zero differing aggregates means the versions are equal.
SELECT count(DISTINCT aggregate_id) AS diffs
FROM (
    (SELECT {columns} FROM {a} EXCEPT ALL SELECT {columns} FROM {b})
    UNION ALL
    (SELECT {columns} FROM {b} EXCEPT ALL SELECT {columns} FROM {a})
) AS d
