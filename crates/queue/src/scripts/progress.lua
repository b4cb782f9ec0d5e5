-- progress: stores 0–100 and a message on an ACTIVE job held by this worker and publishes it.
-- ARGV: tag, consumer, id, progress, message, now. Returns -1 (not ours), 0, or 1 (cancel requested).
local consumer, id, p, msg, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local f = redis.call('HMGET', jkey(id), 'state', 'worker', 'cancel')
if f[1] ~= 'active' or f[2] ~= consumer then return -1 end
redis.call('HSET', jkey(id), 'progress', p, 'progress_msg', msg, 'updated', now)
emit(id, 'progress', now, msg, '')
if f[3] == '1' then return 1 end
return 0
