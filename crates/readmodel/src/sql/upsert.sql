INSERT INTO read.{table} AS a ({columns})
SELECT {columns} FROM {staging}
ON CONFLICT (aggregate_id) DO UPDATE SET {assignments}
WHERE a.aggregate_version < EXCLUDED.aggregate_version
