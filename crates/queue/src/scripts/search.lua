-- search: which of one listing step's jobs are in a state, match the type and owner filters and
-- hold a text in their payload (a plain substring of the stored JSON, `string.find` with `plain`),
-- so payloads never leave Redis. Read-only. The ids are examined in order until the payloads read
-- reach `max_bytes` (at least one id is examined, so a listing always moves on).
-- ARGV: tag, state, job type ('' any), owner (lowercase, '' any), needle, max_bytes, ids...
-- Returns {ids examined, payload bytes read, 1-based positions of the matching ids...}.
local want, want_type, want_owner = ARGV[2], ARGV[3], ARGV[4]
local needle, max_bytes = ARGV[5], tonumber(ARGV[6])
local examined, bytes = 0, 0
local reply = {0, 0}
for i = 7, #ARGV do
  if examined > 0 and bytes >= max_bytes then break end
  examined = examined + 1
  local id = ARGV[i]
  if id ~= '' then
    local f = redis.call('HMGET', jkey(id), 'state', 'type', 'owner')
    if f[1] == want and (want_type == '' or f[2] == want_type)
      and (want_owner == '' or string.lower(f[3] or '') == want_owner) then
      local data = redis.call('HGET', jkey(id), 'data') or ''
      bytes = bytes + #data
      if string.find(data, needle, 1, true) then reply[#reply + 1] = examined end
    end
  end
end
reply[1], reply[2] = examined, bytes
return reply
