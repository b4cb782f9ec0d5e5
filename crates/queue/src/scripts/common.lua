-- Shared helpers, prepended to every transition script (see scripts.rs).
-- Every key is built from the queue's hash tag `tag` (ARGV[1] of every script), so a script touches
-- one cluster slot. Job hash fields are documented in job.rs.
local tag = ARGV[1]
local function jkey(id) return tag .. ':job:' .. id end
local function rkey(band) return tag .. ':ready:' .. band end
local GROUP = 'workers'
local EVENTS_MAXLEN = 1000

-- Publishes a job event (JSON, the shape of ncy_queue::JobEventMessage) on the queue's pub/sub
-- channel (live listeners: WatchJob, the realtime gateway) and, unless `live_only`, on the capped
-- events stream for replay. Activation and promotion are live-only: they happen for every job, and
-- the stream keeps the outcomes (what an operator replays).
local function emit(id, kind, now, message, result, live_only)
  local f = redis.call('HMGET', jkey(id), 'state', 'progress', 'attempts', 'due', 'owner', 'queue')
  local ev = cjson.encode({
    jobId = id, queue = f[6] or '', type = kind, state = f[1] or '',
    progress = tonumber(f[2] or '0') or 0, atMs = tonumber(now), message = message or '',
    attemptsMade = tonumber(f[3] or '0') or 0, resultJson = result or '',
    dueAtMs = tonumber(f[4] or '0') or 0, ownerUserId = f[5] or ''
  })
  if not live_only then
    redis.call('XADD', tag .. ':events', 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'e', ev)
  end
  redis.call('PUBLISH', tag .. ':events:live', ev)
end

-- Removes finished jobs of one sorted set older than `age_ms` or beyond `keep` (at most 200 per call,
-- so a script never runs long; the periodic sweep catches up).
local function trim(zkey, now, keep, age_ms)
  local old = redis.call('ZRANGEBYSCORE', zkey, '-inf', '(' .. (now - age_ms), 'LIMIT', 0, 200)
  for _, id in ipairs(old) do
    redis.call('DEL', jkey(id))
    redis.call('ZREM', zkey, id)
  end
  local excess = redis.call('ZCARD', zkey) - keep
  if excess > 0 then
    if excess > 200 then excess = 200 end
    local ids = redis.call('ZRANGE', zkey, 0, excess - 1)
    for _, id in ipairs(ids) do
      redis.call('DEL', jkey(id))
    end
    redis.call('ZREMRANGEBYRANK', zkey, 0, excess - 1)
  end
end

-- Acknowledges and deletes a job's stream entry (no-op when it has none).
local function drop_entry(band, entry)
  if band and entry and band ~= '' and entry ~= '' then
    redis.call('XACK', rkey(band), GROUP, entry)
    redis.call('XDEL', rkey(band), entry)
  end
end

-- Wakes the promoter when `due` is now the earliest delayed job.
local function wake_if_earliest(due)
  local first = redis.call('ZRANGE', tag .. ':delayed', 0, 0, 'WITHSCORES')
  if first[2] and tonumber(first[2]) >= tonumber(due) then
    redis.call('PUBLISH', tag .. ':wake', due)
  end
end

-- Moves a job to the dead-letter stream (terminal DEAD) and returns the dead entry id.
local function to_dead(id, err, now, non_retryable, keep, age_ms)
  local f = redis.call('HMGET', jkey(id), 'queue', 'type', 'data', 'attempts', 'priority', 'owner')
  local dead_id = redis.call('XADD', tag .. ':dead', '*',
    'jobId', id, 'queue', f[1] or '', 'type', f[2] or '', 'data', f[3] or '',
    'error', err, 'failedAt', now, 'attemptsMade', f[4] or '0', 'priority', f[5] or '0',
    'owner', f[6] or '', 'nonRetryable', non_retryable)
  redis.call('HSET', jkey(id), 'state', 'dead', 'dead_id', dead_id, 'error', err,
    'finished', now, 'updated', now, 'worker', '', 'band', '', 'entry', '')
  redis.call('ZREM', tag .. ':active', id)
  redis.call('ZADD', tag .. ':failed', now, id)
  trim(tag .. ':failed', now, keep, age_ms)
  emit(id, 'state_changed', now, err, '')
  return dead_id
end

-- Marks a waiting job ACTIVE for `consumer` and returns what the worker needs to run it, or nil
-- (and drops the entry) when the job is no longer waiting (cancelled, removed).
local function activate(id, band, entry, consumer, now)
  local k = jkey(id)
  local st = redis.call('HGET', k, 'state')
  if st ~= 'waiting' then
    drop_entry(band, entry)
    return nil
  end
  local attempts = redis.call('HINCRBY', k, 'attempts', 1)
  redis.call('HSET', k, 'state', 'active', 'worker', consumer, 'started', now, 'updated', now,
    'band', band, 'entry', entry)
  redis.call('ZADD', tag .. ':active', now, id)
  emit(id, 'state_changed', now, '', '', true)
  local f = redis.call('HMGET', k, 'type', 'data', 'max_attempts', 'backoff_kind', 'backoff_ms',
    'created', 'due', 'owner')
  return {id, f[1] or '', f[2] or '{}', attempts, tonumber(f[3] or '1') or 1, f[4] or 'exponential',
    tonumber(f[5] or '0') or 0, tonumber(band), entry, tonumber(f[6] or '0') or 0,
    tonumber(f[7] or '0') or 0, f[8] or ''}
end
