-- dead-select: reads part of the dead-letter stream, oldest first, and answers which entries match
-- a selection, so a bulk retry or purge never moves payloads over the network. Read-only. It reads
-- at most `limit` entries after `start` up to `stop` (inclusive), in XRANGEs sized by the entries
-- seen so far, and stops once the entries read hold `max_bytes` (at least one entry is read, so a
-- run always moves on); the caller continues after `last`.
-- ARGV: tag, start ('-' or '(<id>'), stop (<id>), limit, job type ('' any), owner (lowercase,
-- '' any), failed before (ms, 0 any), max_bytes.
-- Returns {examined, last entry id read ('' none), done (1: nothing left up to `stop`), ids...}.
local start, stop, limit = ARGV[2], ARGV[3], tonumber(ARGV[4])
local want_type, want_owner = ARGV[5], ARGV[6]
local before, max_bytes = tonumber(ARGV[7]), tonumber(ARGV[8])
local examined, bytes, last, done = 0, 0, '', 0
local out = {}
while examined < limit and (examined == 0 or bytes < max_bytes) and last ~= stop do
  -- 4 entries first, then as many as the average entry size says still fit (1 to 50).
  local n = 4
  if examined > 0 then
    n = math.floor((max_bytes - bytes) / math.max(1, bytes / examined))
    n = math.max(1, math.min(50, n))
  end
  n = math.min(n, limit - examined)
  local got = redis.call('XRANGE', tag .. S_DEAD, start, stop, 'COUNT', n)
  for _, e in ipairs(got) do
    examined = examined + 1
    last = e[1]
    local d = {}
    local fields = e[2]
    for i = 1, #fields, 2 do
      d[fields[i]] = fields[i + 1]
      bytes = bytes + #fields[i + 1]
    end
    local failed_at = tonumber(d.failedAt or '') or tonumber(string.match(e[1], '^(%d+)')) or 0
    if (want_type == '' or d.type == want_type)
      and (want_owner == '' or string.lower(d.owner or '') == want_owner)
      and (before == 0 or failed_at < before) then
      out[#out + 1] = e[1]
    end
  end
  if #got < n then
    done = 1
    break
  end
  start = '(' .. last
end
if last == stop then done = 1 end
local reply = {examined, last, done}
for _, id in ipairs(out) do reply[#reply + 1] = id end
return reply
