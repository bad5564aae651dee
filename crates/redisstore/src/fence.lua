-- Raises a partition's fencing token to the caller's (taken with its PostgreSQL claim), so
-- that every writer with a lower token is refused from now on, even before this one writes.
-- KEYS[1] the partition's token, ARGV[1] the caller's. Returns {1, token} when raised or
-- equal, {0, stored} when a greater token is already there (the caller is the stale one).
local token = tonumber(ARGV[1])
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
if stored > token then
  return {0, stored}
end
redis.call('SET', KEYS[1], ARGV[1])
return {1, token}
