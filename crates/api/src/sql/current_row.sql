-- The whole read path in one statement: the function resolves the family's active version and
-- reads its row on this statement's snapshot, so a concurrent cutover is either wholly before
-- or wholly after this read (see read.current_row in the readmodel schema). A request that names
-- no family (NULL) reads the one family with an active version (read.only_active_family).
SELECT projection_version, quarantined, row_json
FROM read.current_row(coalesce($1::TEXT, read.only_active_family()), $2::TEXT)
