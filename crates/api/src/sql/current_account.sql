-- The whole read path in one statement: the function resolves the active version and reads
-- its row on this statement's snapshot, so a concurrent cutover is either wholly before or
-- wholly after this read (see read.current_account in the readmodel schema).
SELECT projection_version, quarantined, account
FROM read.current_account($1)
