-- complete(id) or cancelled-while-running(id): XACK + XDEL, terminal state, finished set, retention
-- trim, event. Only the worker that holds the job may finish it: a stale worker (its job was
-- reclaimed after it stopped heartbeating) gets 0 and its outcome is dropped.
-- ARGV: tag, consumer, id, outcome ('completed' | 'cancelled'), text (result JSON or reason), now,
--   keep, age_ms
local consumer, id, outcome, text = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now, keep, age_ms = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local f = redis.call('HMGET', jkey(id), 'state', 'worker', 'band', 'entry')
if f[1] ~= 'active' or f[2] ~= consumer then return 0 end
drop_entry(f[3], f[4])
redis.call('ZREM', tag .. ':active', id)
local zkey
if outcome == 'completed' then
  redis.call('HSET', jkey(id), 'state', 'completed', 'result', text, 'finished', now,
    'updated', now, 'worker', '', 'band', '', 'entry', '')
  zkey = tag .. ':done'
else
  redis.call('HSET', jkey(id), 'state', 'cancelled', 'error', 'cancelled: ' .. text,
    'finished', now, 'updated', now, 'worker', '', 'band', '', 'entry', '')
  zkey = tag .. ':cancelled'
end
redis.call('ZADD', zkey, now, id)
if outcome == 'completed' then
  emit(id, 'state_changed', now, '', text)
else
  emit(id, 'state_changed', now, text, '')
end
trim(zkey, now, keep, age_ms)
return 1
