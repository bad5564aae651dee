-- v3 against v4 on their common columns. They must differ on exactly the aggregates whose
-- history has a nested (fee engine v2) fee, which v3 folds as zero, and nowhere else.
WITH diff AS (
    SELECT DISTINCT aggregate_id
    FROM (
        (SELECT {columns} FROM {a} EXCEPT ALL SELECT {columns} FROM {b})
        UNION ALL
        (SELECT {columns} FROM {b} EXCEPT ALL SELECT {columns} FROM {a})
    ) AS d
),
known AS (
    SELECT aggregate_id FROM lab.expected_accounts WHERE v3_bug
)
SELECT (SELECT count(*) FROM diff) AS diffs,
       (SELECT count(*) FROM known) AS expected_diffs,
       (SELECT count(*) FROM ((SELECT aggregate_id FROM diff EXCEPT SELECT aggregate_id FROM known)
                              UNION ALL
                              (SELECT aggregate_id FROM known EXCEPT SELECT aggregate_id FROM diff)) AS s) AS unexpected
