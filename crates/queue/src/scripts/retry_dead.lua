-- retry-dead-letter: re-enqueues a dead letter as a new job with priority 10 and one attempt (as in
-- the seed) and removes the entry, atomically.
-- ARGV: tag, dead entry id, full dead-letter id, new job id, now. Returns the new id or false.
local entry, dead_letter_id, new_id, now = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local got = redis.call('XRANGE', tag .. S_DEAD, entry, entry)
if not got[1] then return false end
local d = {}
local fields = got[1][2]
for i = 1, #fields, 2 do d[fields[i]] = fields[i + 1] end
redis.call('HSET', jkey(new_id), 'state', 'waiting', 'queue', d.queue or '', 'type', d.type or '',
  'data', d.data or '{}', 'priority', 10, 'attempts', 0, 'max_attempts', 1,
  'backoff_kind', 'exponential', 'backoff_ms', 2000, 'progress', 0, 'idem', '', 'owner', d.owner or '',
  'schedule', '', 'retried_from', dead_letter_id, 'created', now, 'due', now, 'updated', now)
local e = redis.call('XADD', rkey('10'), '*', 'j', new_id)
redis.call('HSET', jkey(new_id), 'band', '10', 'entry', e)
redis.call('XDEL', tag .. S_DEAD, entry)
return new_id
