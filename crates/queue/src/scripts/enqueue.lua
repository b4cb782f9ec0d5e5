-- enqueue / enqueue-bulk for one queue: dedup check, job hash, XADD to its band or ZADD to delayed.
-- ARGV: tag, now, dedup_ttl_ms, queue, n, then 12 fields per job:
--   id, type, data, priority, max_attempts, backoff_kind, backoff_ms, delay_ms, idem, owner,
--   schedule, dedup (the key of idem's record, built by ncy-types: a cron tick's and a client's
--   live in different namespaces; '' when idem is '')
-- Returns per job: {id, deduplicated (0/1), state}.
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local queue = ARGV[4]
local n = tonumber(ARGV[5])
local out = {}
local min_due = nil
for i = 0, n - 1 do
  local b = 6 + i * 12
  local id, jtype, data = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local priority, max_attempts = ARGV[b + 3], ARGV[b + 4]
  local bkind, bms, delay = ARGV[b + 5], ARGV[b + 6], tonumber(ARGV[b + 7])
  local idem, owner, schedule, dedup = ARGV[b + 8], ARGV[b + 9], ARGV[b + 10], ARGV[b + 11]
  local existing = false
  if dedup ~= '' then
    existing = redis.call('GET', dedup)
  end
  if existing then
    local st = redis.call('HGET', jkey(existing), 'state') or 'removed'
    out[#out + 1] = {existing, 1, st}
  else
    if dedup ~= '' then
      redis.call('SET', dedup, id, 'PX', ttl)
    end
    local due = now + delay
    local state, band, entry = 'waiting', '', ''
    if delay > 0 then state = 'delayed' end
    if delay > 0 then
      redis.call('ZADD', tag .. ':delayed', due, id)
      if min_due == nil or due < min_due then min_due = due end
    else
      band = priority
      entry = redis.call('XADD', rkey(band), '*', 'j', id)
    end
    -- XADD before HSET so the job hash is written once, with its entry (all in one atomic script).
    -- Fields that would be empty or 0 (attempts, progress, no idempotency key, owner, schedule,
    -- band and entry of a delayed job) are left out: readers take a missing field as
    -- empty or 0, and a listpack hash costs per field on every write that follows.
    local h = {'state', state, 'queue', queue, 'type', jtype, 'data', data, 'priority', priority,
      'max_attempts', max_attempts, 'backoff_kind', bkind, 'backoff_ms', bms, 'created', now,
      'due', due, 'updated', now}
    local function opt(name, value)
      if value ~= '' then h[#h + 1] = name; h[#h + 1] = value end
    end
    opt('band', band)
    opt('entry', entry)
    opt('idem', idem)
    opt('owner', owner)
    opt('schedule', schedule)
    redis.call('HSET', jkey(id), unpack(h))
    out[#out + 1] = {id, 0, state}
  end
end
if min_due ~= nil then wake_if_earliest(min_due) end
return out
