SELECT version
FROM read.projections
WHERE state = 'active' AND family = $1
