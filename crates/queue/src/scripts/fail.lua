-- fail(id, error, mode): mode '1' (retryable) with attempts left → FAILED, retry due after backoff
-- (ZADD delayed, wake the promoter); mode 'p' (postpone: a dependency of the job is down) → FAILED,
-- due after the delay given, with the attempt given back (activation counted it), whatever attempts
-- remain; otherwise → DEAD with a dead-letter entry and an event for the alert.
-- ARGV: tag, consumer, id, error, mode ('1', '0' or 'p'), now, delay_ms, keep, age_ms
-- Returns {0} (stale), {1, due} (retry scheduled), {2, dead_id} (dead), {3, due} (postponed).
local consumer, id, err = ARGV[2], ARGV[3], ARGV[4]
local mode, now, delay = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local keep, age_ms = tonumber(ARGV[8]), tonumber(ARGV[9])
local f = redis.call('HMGET', jkey(id), 'state', 'worker', 'band', 'entry', 'attempts', 'max_attempts')
if f[1] ~= 'active' or f[2] ~= consumer then return {0} end
drop_entry(f[3], f[4])
local attempts, max_attempts = tonumber(f[5] or '0') or 0, tonumber(f[6] or '1') or 1
if mode == 'p' or (mode == '1' and attempts < max_attempts) then
  local due = now + delay
  local k = jkey(id)
  if mode == 'p' then
    if attempts < 1 then attempts = 1 end
    redis.call('HSET', k, 'state', 'failed', 'attempts', attempts - 1, 'error', err, 'due', due,
      'updated', now, 'worker', '', 'band', '', 'entry', '')
  else
    redis.call('HSET', k, 'state', 'failed', 'error', err, 'due', due, 'updated', now,
      'worker', '', 'band', '', 'entry', '')
  end
  redis.call('ZADD', tag .. S_DELAYED, due, id)
  wake_if_earliest(due)
  emit(id, 'state_changed', now, err, '')
  if mode == 'p' then return {3, due} end
  return {1, due}
end
local nr = '0'
if mode == '0' then nr = '1' end
return {2, to_dead(id, err, now, nr, keep, age_ms)}
