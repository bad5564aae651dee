-- The whole read path in one statement: the function resolves the family's active version and
-- reads its row on this statement's snapshot, so a concurrent cutover is either wholly before
-- or wholly after this read (see read.current_row in the readmodel schema).
SELECT projection_version, quarantined, row_json
FROM read.current_row($1, $2)
