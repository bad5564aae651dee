-- One batch of a version's rows and the position they reach, in one atomic step.
--
-- KEYS[1]   the version's positions hash (partition -> "tx:seq")
-- KEYS[2]   the partition's fencing token
-- KEYS[3]   the partition's held events (hash "id:version" -> the event as JSON)
-- KEYS[4..] one row hash per row of the batch
-- ARGV[1]   the caller's fencing token (from its PostgreSQL claim)
-- ARGV[2]   the partition
-- ARGV[3]   the position the batch reaches, "tx:seq" ("" to leave the position as it is)
-- ARGV[4]   h: held events to add, ARGV[5] d: held events applied (to remove)
-- ARGV[6..] h field/value pairs, then d fields, then per row: version, global_seq, n, then
--           n field/value pairs
--
-- Refused, changing nothing, when the stored token is greater than the caller's: a writer
-- that lost its claim cannot write after its successor. A row is written only when it is
-- newer than the stored one (the version guard: a row never moves back), replacing the whole
-- hash (a NULL is an absent field). The position never moves back either.
-- Returns {1, written, skipped} or {0, stored_token}.
local token = tonumber(ARGV[1])
local stored = tonumber(redis.call('GET', KEYS[2]) or '0')
if stored > token then
  return {0, stored}
end
if stored < token then
  redis.call('SET', KEYS[2], ARGV[1])
end
local function position_of(text)
  local tx, seq = string.match(text, '^(%-?%d+):(%-?%d+)$')
  return tonumber(tx), tonumber(seq)
end
if ARGV[3] ~= '' then
  local current = redis.call('HGET', KEYS[1], ARGV[2])
  local move = true
  if current then
    local ctx, cseq = position_of(current)
    local ntx, nseq = position_of(ARGV[3])
    move = ntx > ctx or (ntx == ctx and nseq > cseq)
  end
  if move then
    redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  end
end
local h = tonumber(ARGV[4])
local d = tonumber(ARGV[5])
local i = 6
if h > 0 then
  redis.call('HSET', KEYS[3], unpack(ARGV, i, i + 2 * h - 1))
end
i = i + 2 * h
if d > 0 then
  redis.call('HDEL', KEYS[3], unpack(ARGV, i, i + d - 1))
end
i = i + d
local written, skipped = 0, 0
for k = 4, #KEYS do
  local version = tonumber(ARGV[i])
  local n = tonumber(ARGV[i + 2])
  local current = redis.call('HGET', KEYS[k], '_version')
  if current and tonumber(current) >= version then
    skipped = skipped + 1
  else
    redis.call('DEL', KEYS[k])
    if n > 0 then
      redis.call('HSET', KEYS[k], '_version', ARGV[i], '_seq', ARGV[i + 1], unpack(ARGV, i + 3, i + 2 + 2 * n))
    else
      redis.call('HSET', KEYS[k], '_version', ARGV[i], '_seq', ARGV[i + 1])
    end
    written = written + 1
  end
  i = i + 3 + 2 * n
end
return {1, written, skipped}
