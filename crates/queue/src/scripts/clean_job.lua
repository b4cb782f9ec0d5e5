-- clean-job: deletes a finished job's record for CleanJobs, only if it is still in `state`
-- (completed, dead or cancelled) and in that state's set, finished at or before `cutoff`: its hash
-- and its set entry. Its dead letter, if any, stays; its idempotency record expires on its own.
-- ARGV: tag, id, state, cutoff. Returns 1 deleted, 0 not (gone, moved on, or too recent).
local id, want, cutoff = ARGV[2], ARGV[3], tonumber(ARGV[4])
local sets = {completed = S_DONE, dead = S_FAILED, cancelled = S_CANCELLED}
local set = sets[want]
if not set then return 0 end
if redis.call('HGET', jkey(id), 'state') ~= want then return 0 end
local score = redis.call('ZSCORE', tag .. set, id)
if not score or tonumber(score) > cutoff then return 0 end
redis.call('ZREM', tag .. set, id)
redis.call('DEL', jkey(id))
return 1
