-- cancel: WAITING, DELAYED or FAILED → CANCELLED at once; ACTIVE → cancel requested (the worker
-- learns it at its next heartbeat or progress report and stops the processor).
-- ARGV: tag, id, reason, now, keep, age_ms. Returns {code, state}: code 0 not found, 1 done,
-- 2 failed precondition.
local id, reason, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
local keep, age_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local f = redis.call('HMGET', jkey(id), 'state', 'band', 'entry')
local st = f[1]
if not st then return {0, ''} end
if st == 'completed' or st == 'dead' then return {2, st} end
if st == 'cancelled' then return {1, st} end
if st == 'active' then
  redis.call('HSET', jkey(id), 'cancel', '1', 'updated', now)
  emit(id, 'state_changed', now, 'cancel requested: ' .. reason, '')
  return {1, st}
end
if st == 'waiting' then
  if f[3] and f[3] ~= '' then
    drop_entry(f[2], f[3])
  else
    -- Enqueued without a script, its entry id is not on the hash: the entry stays in its band
    -- until a fetch passes it (and drops it, see `activate`); until then QueueStats does not
    -- count it as waiting.
    redis.call('SADD', tag .. S_GHOSTS, id)
  end
end
redis.call('ZREM', tag .. S_DELAYED, id)
redis.call('HSET', jkey(id), 'state', 'cancelled', 'error', 'cancelled: ' .. reason,
  'finished', now, 'updated', now, 'band', '', 'entry', '')
redis.call('ZADD', tag .. S_CANCELLED, now, id)
emit(id, 'state_changed', now, reason, '')
trim(tag .. S_CANCELLED, now, keep, age_ms)
return {1, 'cancelled'}
