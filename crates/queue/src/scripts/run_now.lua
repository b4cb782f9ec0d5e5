-- run-now: a DELAYED job (PromoteJob) or a FAILED one waiting for its retry (RetryJob) becomes
-- WAITING at once: out of the delayed set (only if it is still there: a promoter that moved it first
-- made it WAITING already), into its priority's band, due now, its attempts as they were. The
-- event is promote.lua's (live only).
-- ARGV: tag, id, the state expected ('delayed' or 'failed'), now.
-- Returns {0} no such job, {1} moved, {2, state} in another state, {3, dead_id} DEAD while 'failed'
-- was expected (RetryJob then retries its dead letter).
local id, want, now = ARGV[2], ARGV[3], ARGV[4]
local f = redis.call('HMGET', jkey(id), 'state', 'priority', 'dead_id')
local st = f[1]
if not st then return {0} end
if st == 'dead' and want == 'failed' then return {3, f[3] or ''} end
if st ~= want or redis.call('ZREM', tag .. S_DELAYED, id) == 0 then return {2, st} end
local band = f[2] or '0'
local entry = redis.call('XADD', rkey(band), '*', 'j', id)
redis.call('HSET', jkey(id), 'state', 'waiting', 'band', band, 'entry', entry, 'due', now,
  'updated', now)
emit(id, 'state_changed', now, '', '', true)
return {1}
