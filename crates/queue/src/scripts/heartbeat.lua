-- heartbeat: a live worker resets the idle time of its in-flight entries (XCLAIM JUSTID) so they are
-- not reclaimed, records itself in the workers set, and learns which of its jobs were cancelled.
-- ARGV: tag, consumer, now, then (id, band, entry) triples. Returns the ids with cancel requested.
local consumer, now = ARGV[2], tonumber(ARGV[3])
redis.call('ZADD', tag .. S_WORKERS, now, consumer)
local cancelled = {}
local i = 4
while ARGV[i] do
  local id, band, entry = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local f = redis.call('HMGET', jkey(id), 'state', 'worker', 'cancel')
  if f[1] == 'active' and f[2] == consumer then
    redis.call('XCLAIM', rkey(band), GROUP, consumer, 0, entry, 'JUSTID')
    if f[3] == '1' then cancelled[#cancelled + 1] = id end
  end
  i = i + 3
end
return cancelled
