-- schedule-set: writes schedule `name`'s stored definition only if it is still `expected` ('' when
-- absent), so an upsert and a pause or resume from another replica never overwrite each other
-- (the caller reads again and retries).
-- KEYS[1]: the schedules hash. ARGV: tag (unused), name, expected, new. Returns 1 written, 0 not.
local cur = redis.call('HGET', KEYS[1], ARGV[2]) or ''
if cur ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
return 1
