-- fail(id, error, retryable): attempts remain and retryable → FAILED, retry due after backoff (ZADD
-- delayed, wake the promoter); else → DEAD with a dead-letter entry and an event for the alert.
-- ARGV: tag, consumer, id, error, retryable (1/0), now, backoff_delay_ms, keep, age_ms
-- Returns {0} (stale), {1, due} (retry scheduled), {2, dead_id} (dead).
local consumer, id, err = ARGV[2], ARGV[3], ARGV[4]
local retryable, now, delay = ARGV[5] == '1', tonumber(ARGV[6]), tonumber(ARGV[7])
local keep, age_ms = tonumber(ARGV[8]), tonumber(ARGV[9])
local f = redis.call('HMGET', jkey(id), 'state', 'worker', 'band', 'entry', 'attempts', 'max_attempts')
if f[1] ~= 'active' or f[2] ~= consumer then return {0} end
drop_entry(f[3], f[4])
local attempts, max_attempts = tonumber(f[5] or '0'), tonumber(f[6] or '1')
if retryable and attempts < max_attempts then
  local due = now + delay
  redis.call('HSET', jkey(id), 'state', 'failed', 'error', err, 'due', due, 'updated', now,
    'worker', '', 'band', '', 'entry', '')
  redis.call('ZADD', tag .. ':delayed', due, id)
  wake_if_earliest(due)
  emit(id, 'state_changed', now, err, '')
  return {1, due}
end
local nr = '0'
if not retryable then nr = '1' end
return {2, to_dead(id, err, now, nr, keep, age_ms)}
