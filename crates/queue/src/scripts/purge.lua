-- purge: deletes finished job records (completed, dead, cancelled: their hashes and set entries)
-- that finished before `cutoff`, and dead letters added before it (a dead-letter stream id is its
-- ms timestamp), at most `batch` of each set and of the stream per call, so a call never runs long;
-- the caller repeats while `more` is 1.
-- ARGV: tag, cutoff_ms, batch. Returns {jobs deleted, dead letters deleted, more}.
local cutoff, batch = tonumber(ARGV[2]), tonumber(ARGV[3])
local jobs, more = 0, 0
for _, set in ipairs({S_DONE, S_FAILED, S_CANCELLED}) do
  local zkey = tag .. set
  local ids = redis.call('ZRANGEBYSCORE', zkey, '-inf', '(' .. cutoff, 'LIMIT', 0, batch)
  for _, id in ipairs(ids) do
    redis.call('DEL', jkey(id))
    redis.call('ZREM', zkey, id)
  end
  jobs = jobs + #ids
  if #ids == batch then more = 1 end
end
local old = redis.call('XRANGE', tag .. S_DEAD, '-', '(' .. cutoff .. '-0', 'COUNT', batch)
for _, entry in ipairs(old) do
  redis.call('XDEL', tag .. S_DEAD, entry[1])
end
if #old == batch then more = 1 end
return {jobs, #old, more}
