-- reclaim: XAUTOCLAIM entries idle longer than the visibility timeout (their worker died or hung),
-- then run them here, or fail a job that has been reclaimed more than max_reclaims times (it keeps
-- killing its worker) as DEAD.
-- ARGV: tag, consumer, min_idle_ms, count, max_reclaims, now, keep, age_ms
-- Returns jobs in fetch's shape.
local consumer, min_idle, count = ARGV[2], ARGV[3], tonumber(ARGV[4])
local max_reclaims, now = tonumber(ARGV[5]), tonumber(ARGV[6])
local keep, age_ms = tonumber(ARGV[7]), tonumber(ARGV[8])
local out = {}
for band = 10, 0, -1 do
  if #out >= count then break end
  local b = tostring(band)
  if redis.call('EXISTS', rkey(b)) == 1 then
    local res = redis.call('XAUTOCLAIM', rkey(b), GROUP, consumer, min_idle, '0-0', 'COUNT', count - #out)
    for _, e in ipairs(res[2]) do
      local fields = e[2]
      local id = fields and fields[2]
      if not id then
        drop_entry(b, e[1])
      else
        local k = jkey(id)
        local st = redis.call('HGET', k, 'state')
        if st == 'active' then
          local reclaims = redis.call('HINCRBY', k, 'reclaims', 1)
          if reclaims > max_reclaims then
            drop_entry(b, e[1])
            to_dead(id, 'exceeded max reclaims (' .. max_reclaims .. '): the job keeps killing its worker',
              now, '1', keep, age_ms)
          else
            redis.call('HSET', k, 'state', 'waiting')
            local job = activate(id, b, e[1], consumer, now)
            if job then out[#out + 1] = job end
          end
        else
          local job = activate(id, b, e[1], consumer, now)
          if job then out[#out + 1] = job end
        end
      end
    end
  end
end
return out
