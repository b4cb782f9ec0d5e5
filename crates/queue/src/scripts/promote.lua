-- promote: moves due delayed jobs and retries to their band (bounded batch).
-- ARGV: tag, now, limit. Returns {moved, next_due (-1 when none)}.
local now, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', tag .. S_DELAYED, '-inf', now, 'LIMIT', 0, limit)
local moved = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', tag .. S_DELAYED, id)
  local f = redis.call('HMGET', jkey(id), 'state', 'priority')
  if f[1] == 'delayed' or f[1] == 'failed' then
    local band = f[2] or '0'
    local entry = redis.call('XADD', rkey(band), '*', 'j', id)
    redis.call('HSET', jkey(id), 'state', 'waiting', 'band', band, 'entry', entry, 'updated', now)
    emit(id, 'state_changed', now, '', '', true)
    moved = moved + 1
  end
end
local first = redis.call('ZRANGE', tag .. S_DELAYED, 0, 0, 'WITHSCORES')
local next_due = -1
if first[2] then next_due = tonumber(first[2]) end
return {moved, next_due}
