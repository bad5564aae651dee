-- The fencing tokens of store claims: a value taken with each partition claim, increasing
-- across every claim of every process, so a later claim always holds a greater token.
CREATE SEQUENCE IF NOT EXISTS read.store_fence_tokens;
