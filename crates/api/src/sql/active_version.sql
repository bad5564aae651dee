SELECT version
FROM read.projections
WHERE state = 'active'
