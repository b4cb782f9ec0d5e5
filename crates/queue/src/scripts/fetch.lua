-- fetch(consumer, n): claims up to n ready jobs, highest band first, FIFO within a band, unless the
-- queue is paused or its shared rate limit (a sliding log of starts) is used up.
-- ARGV: tag, consumer, n, now, rate_max (0 = unlimited), rate_window_ms, recover (1: a blocking
-- read of this consumer lost its reply), m, then m (band, entry) pairs already read by the worker's
-- blocking XREADGROUP (they are activated first, or put back at the end of their band when the
-- queue is paused or limited).
-- Returns {1, job...} | {2, job...} (as 1, but more of the consumer's own waiting entries remain
-- for the next fetch) | {-1} (paused) | {-2, retry_after_ms} (rate limited).
local consumer, n, now = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now_s = ARGV[4] -- written as given: a Lua number costs a formatting per write
local rate_max, window = tonumber(ARGV[5]), tonumber(ARGV[6])
local recover = ARGV[7] == '1'
local m = tonumber(ARGV[8])
local limiter = tag .. S_LIMITER

local function requeue_preclaimed()
  for i = 0, m - 1 do
    local band, entry = ARGV[9 + i * 2], ARGV[10 + i * 2]
    local got = redis.call('XRANGE', rkey(band), entry, entry)
    drop_entry(band, entry)
    if got[1] then
      local id = got[1][2][2]
      if redis.call('HGET', jkey(id), 'state') == 'waiting' then
        local e = redis.call('XADD', rkey(band), '*', 'j', id)
        redis.call('HSET', jkey(id), 'entry', e)
      else
        redis.call('SREM', tag .. S_GHOSTS, id)
      end
    end
  end
end

if redis.call('EXISTS', tag .. S_PAUSED) == 1 then
  requeue_preclaimed()
  return {-1}
end
if rate_max > 0 then
  redis.call('ZREMRANGEBYSCORE', limiter, '-inf', now - window)
  local used = redis.call('ZCARD', limiter)
  if used >= rate_max then
    requeue_preclaimed()
    local oldest = redis.call('ZRANGE', limiter, 0, 0, 'WITHSCORES')
    local retry = window
    if oldest[2] then retry = tonumber(oldest[2]) + window - now end
    if retry < 1 then retry = 1 end
    return {-2, retry}
  end
  if rate_max - used < n then n = rate_max - used end
end

local out = {1}
local function take(id, band, entry)
  local job = activate(id, band, entry, consumer, now_s)
  if job then
    out[#out + 1] = job
    if rate_max > 0 then redis.call('ZADD', limiter, now_s, id) end
  end
end

for i = 0, m - 1 do
  local band, entry = ARGV[9 + i * 2], ARGV[10 + i * 2]
  local got = redis.call('XRANGE', rkey(band), entry, entry)
  if got[1] then take(got[1][2][2], band, entry) else drop_entry(band, entry) end
end
-- Entries a lost blocking read delivered to this consumer: its own pending entries (id 0 reads
-- them back) whose jobs are still waiting. Its running jobs' entries (ACTIVE) stay as they are;
-- the entries of jobs cancelled or gone meanwhile are dropped.
local remaining = 0
if recover then
  for band = 10, 0, -1 do
    local b = tostring(band)
    if redis.call('EXISTS', rkey(b)) == 1 then
      local res = redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'STREAMS', rkey(b), '0')
      for _, e in ipairs((res and res[1] and res[1][2]) or {}) do
        local fields = e[2]
        local id = fields and fields[2]
        local state = id and redis.call('HGET', jkey(id), 'state')
        if state == 'waiting' then
          if #out - 1 < n then take(id, b, e[1]) else remaining = remaining + 1 end
        elseif state ~= 'active' then
          drop_entry(b, e[1])
          if id then redis.call('SREM', tag .. S_GHOSTS, id) end
        end
      end
    end
  end
end
if remaining > 0 then out[1] = 2 end
for band = 10, 0, -1 do
  if #out - 1 >= n then break end
  -- XLEN is cheaper than an XREADGROUP that finds nothing, and most bands are empty.
  local res = false
  if redis.call('XLEN', rkey(band)) > 0 then
    res = redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', n - (#out - 1),
      'STREAMS', rkey(band), '>')
  end
  if res then
    for _, e in ipairs(res[1][2]) do
      local fields = e[2]
      if fields and fields[2] then take(fields[2], tostring(band), e[1]) else drop_entry(tostring(band), e[1]) end
    end
  end
end
if rate_max > 0 then redis.call('PEXPIRE', limiter, window * 2) end
return out
