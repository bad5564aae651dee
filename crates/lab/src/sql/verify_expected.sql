-- Every aggregate of a read model against the lab's expected state. A row missing on either
-- side counts as a difference. {table} is the version's quoted table, {read_columns} and
-- {expected_columns} the compared columns, {expected_filter} (over alias e) the aggregates
-- known to differ (v3's fee bug), and `unexpected` the size of the symmetric difference
-- between the differing and the known-to-differ aggregates.
WITH diffs AS (
    SELECT coalesce(r.aggregate_id, e.aggregate_id) AS aggregate_id
    FROM {table} AS r
    FULL OUTER JOIN lab.expected_accounts AS e ON e.aggregate_id = r.aggregate_id
    WHERE r.aggregate_id IS NULL
       OR e.aggregate_id IS NULL
       OR ({read_columns}) IS DISTINCT FROM ({expected_columns})
),
expected AS (
    SELECT e.aggregate_id FROM lab.expected_accounts AS e WHERE {expected_filter}
)
SELECT
    (SELECT count(*) FROM {table}) AS read_rows,
    (SELECT count(*) FROM lab.expected_accounts) AS expected_rows,
    (SELECT count(*) FROM diffs) AS diffs,
    (SELECT count(*) FROM expected) AS expected_diffs,
    (SELECT count(*) FROM (
        (SELECT aggregate_id FROM diffs EXCEPT SELECT aggregate_id FROM expected)
        UNION ALL
        (SELECT aggregate_id FROM expected EXCEPT SELECT aggregate_id FROM diffs)
    ) AS x) AS unexpected
