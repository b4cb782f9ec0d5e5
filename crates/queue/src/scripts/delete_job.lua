-- delete-job: removes a job that is not ACTIVE: its hash, its place in the delayed, done, failed
-- (dead jobs) and cancelled sets and, while WAITING, its stream entry (acknowledged and deleted
-- when the hash knows it; else, enqueued without a script, the job is counted a ghost as cancel.lua
-- does, and the fetch that passes the entry drops it: `activate` finds no waiting job). Its
-- idempotency record expires on its own; its dead letter, if any, stays. Open watches are told by
-- a live-only 'deleted' event.
-- ARGV: tag, id, now. Returns {0, ''} not found, {1, state} deleted, {2, state} refused (ACTIVE).
local id, now = ARGV[2], ARGV[3]
local f = redis.call('HMGET', jkey(id), 'state', 'band', 'entry', 'progress', 'attempts', 'due',
  'owner', 'queue')
local st = f[1]
if not st then return {0, ''} end
if st == 'active' then return {2, st} end
if st == 'waiting' then
  if f[3] and f[3] ~= '' then
    drop_entry(f[2], f[3])
  else
    redis.call('SADD', tag .. S_GHOSTS, id)
  end
end
for _, set in ipairs({S_DELAYED, S_DONE, S_FAILED, S_CANCELLED}) do
  redis.call('ZREM', tag .. set, id)
end
redis.call('DEL', jkey(id))
emit(id, 'deleted', now, 'deleted', '', true, {st, f[4], f[5], f[6], f[7], f[8]})
return {1, st}
