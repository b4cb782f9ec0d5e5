-- enqueue / enqueue-bulk for one queue: dedup check, job hash, XADD to its band or ZADD to delayed.
-- ARGV: tag, dedup_ttl_ms, n, then per job: id, dedup (the key of its idempotency record, built by
--   ncy-types: a cron tick's and a client's live in different namespaces; '' without a key), due
--   (the delayed set's score; 0 when the job is ready now), band, k, then k field/value pairs: the
--   job's initial hash, defined once in Rust (NewJob::initial_hash).
-- Returns per job: {} when it was enqueued, {existing id, its state or 'removed'} when deduplicated.
local ttl = ARGV[2]
local n = tonumber(ARGV[3])
local out = {}
local min_due = nil
local b = 4
for i = 1, n do
  local id, dedup, due, band, k = ARGV[b], ARGV[b + 1], tonumber(ARGV[b + 2]), ARGV[b + 3],
    tonumber(ARGV[b + 4])
  local first, last = b + 5, b + 4 + 2 * k
  b = last + 1
  local existing = false
  if dedup ~= '' then
    existing = redis.call('GET', dedup)
  end
  if existing then
    out[i] = {existing, redis.call('HGET', jkey(existing), 'state') or 'removed'}
  else
    if dedup ~= '' then
      redis.call('SET', dedup, id, 'PX', ttl)
    end
    if due > 0 then
      redis.call('ZADD', tag .. S_DELAYED, due, id)
      if min_due == nil or due < min_due then min_due = due end
      redis.call('HSET', jkey(id), unpack(ARGV, first, last))
    else
      -- XADD before HSET so the job hash is written once, with its entry (one atomic script).
      local entry = redis.call('XADD', rkey(band), '*', 'j', id)
      redis.call('HSET', jkey(id), 'entry', entry, unpack(ARGV, first, last))
    end
    out[i] = {}
  end
end
if min_due ~= nil then wake_if_earliest(min_due) end
return out
