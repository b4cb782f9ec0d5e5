-- Shared helpers, prepended to every transition script (see scripts.rs).
-- Every key is built from the queue's hash tag `tag` (ARGV[1] of every script) and a suffix
-- `S_<NAME>`, a local that scripts.rs prepends from ncy-types' QUEUE_KEY_SUFFIXES (the layout's one
-- definition), so a script touches one cluster slot. Job hash fields are documented in job.rs.
local tag = ARGV[1]
local function jkey(id) return tag .. S_JOB .. id end
local function rkey(band) return tag .. S_READY .. band end
local GROUP = 'workers'
local EVENTS_MAXLEN = '1000'

-- Whether anything listens on the queue's live channel (WatchJob subscribes on the node that holds
-- the queue's slot, so the count is right on Redis Cluster too). Asked once per script call: most
-- jobs are never watched, and a live-only event nobody hears is then not even encoded.
local live_listeners = nil
local function live()
  if live_listeners == nil then
    live_listeners = redis.call('PUBSUB', 'NUMSUB', tag .. S_EVENTS_LIVE)[2] > 0
  end
  return live_listeners
end

-- JSON literals for events: a string escaped by cjson (false, a missing field, is ''), an integer as
-- the scripts store it (a number is formatted, anything else is 0).
local function jstr(s) return cjson.encode(s or '') end
local function jint(v)
  if type(v) == 'number' then return string.format('%d', v) end
  if v and string.find(v, '^%-?%d+$') then return v end
  return '0'
end

-- Publishes a job event (JSON, the shape of ncy_queue::JobEventMessage) on the queue's pub/sub
-- channel (live listeners: WatchJob) when it has listeners and, unless `live_only`, on the capped
-- events stream for replay. Activation and promotion are live-only: they happen for every job, and
-- the stream keeps the outcomes (what an operator replays). `f` is the job's
-- {state, progress, attempts, due, owner, queue} when the caller already has them (else read here).
-- `now` is best the caller's ARGV string: a Lua number costs Redis about 1 µs to format, and the
-- event is concatenated rather than `cjson.encode`d as a table (3 µs against under 1).
local function emit(id, kind, now, message, result, live_only, f)
  if live_only and not live() then return end
  f = f or redis.call('HMGET', jkey(id), 'state', 'progress', 'attempts', 'due', 'owner', 'queue')
  local ev = '{"jobId":' .. jstr(id) .. ',"queue":' .. jstr(f[6]) .. ',"type":' .. jstr(kind)
    .. ',"state":' .. jstr(f[1]) .. ',"progress":' .. jint(f[2]) .. ',"atMs":' .. jint(now)
    .. ',"message":' .. jstr(message) .. ',"attemptsMade":' .. jint(f[3])
    .. ',"resultJson":' .. jstr(result) .. ',"dueAtMs":' .. jint(f[4])
    .. ',"ownerUserId":' .. jstr(f[5]) .. '}'
  if not live_only then
    redis.call('XADD', tag .. S_EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'e', ev)
  end
  if live() then redis.call('PUBLISH', tag .. S_EVENTS_LIVE, ev) end
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
  local first = redis.call('ZRANGE', tag .. S_DELAYED, 0, 0, 'WITHSCORES')
  if first[2] and tonumber(first[2]) >= tonumber(due) then
    redis.call('PUBLISH', tag .. S_WAKE, due)
  end
end

-- Moves a job to the dead-letter stream (terminal DEAD) and returns the dead entry id.
local function to_dead(id, err, now, non_retryable, keep, age_ms)
  local f = redis.call('HMGET', jkey(id), 'queue', 'type', 'data', 'attempts', 'priority', 'owner')
  local dead_id = redis.call('XADD', tag .. S_DEAD, '*',
    'jobId', id, 'queue', f[1] or '', 'type', f[2] or '', 'data', f[3] or '',
    'error', err, 'failedAt', now, 'attemptsMade', f[4] or '0', 'priority', f[5] or '0',
    'owner', f[6] or '', 'nonRetryable', non_retryable)
  redis.call('HSET', jkey(id), 'state', 'dead', 'dead_id', dead_id, 'error', err,
    'finished', now, 'updated', now, 'worker', '', 'band', '', 'entry', '')
  redis.call('ZADD', tag .. S_FAILED, now, id)
  trim(tag .. S_FAILED, now, keep, age_ms)
  emit(id, 'state_changed', now, err, '')
  return dead_id
end

-- Marks a waiting job ACTIVE for `consumer` and returns what the worker needs to run it, or nil
-- (and drops the entry) when the job is no longer waiting (cancelled, removed). One read and one
-- write of the job hash, nothing else: the ACTIVE jobs are the streams' pending entries (XPENDING),
-- not a set of their own. `now` as in `emit`: best the ARGV string.
local function activate(id, band, entry, consumer, now)
  local k = jkey(id)
  local f = redis.call('HMGET', k, 'state', 'type', 'data', 'max_attempts', 'backoff_kind',
    'backoff_ms', 'created', 'due', 'owner', 'attempts', 'progress', 'queue', 'band', 'entry',
    'trace')
  if f[1] ~= 'waiting' then
    drop_entry(band, entry)
    redis.call('SREM', tag .. S_GHOSTS, id)
    return nil
  end
  local attempts = (tonumber(f[10] or '0') or 0) + 1
  -- A listpack hash rewrites in place field by field: write only what changes (the entry is
  -- usually the one the job was enqueued with).
  if f[13] == band and f[14] == entry then
    redis.call('HSET', k, 'state', 'active', 'attempts', attempts, 'worker', consumer,
      'started', now, 'updated', now)
  elseif f[13] == band then
    -- Enqueued without a script: the band is known, the entry id not yet.
    redis.call('HSET', k, 'state', 'active', 'attempts', attempts, 'worker', consumer,
      'started', now, 'updated', now, 'entry', entry)
  else
    redis.call('HSET', k, 'state', 'active', 'attempts', attempts, 'worker', consumer,
      'started', now, 'updated', now, 'band', band, 'entry', entry)
  end
  emit(id, 'state_changed', now, '', '', true, {'active', f[11], attempts, f[8], f[9], f[12]})
  local job = {id, f[2] or '', f[3] or '{}', attempts, tonumber(f[4] or '1') or 1,
    f[5] or 'exponential', tonumber(f[6] or '0') or 0, tonumber(band), entry,
    tonumber(f[7] or '0') or 0, tonumber(f[8] or '0') or 0, f[9] or ''}
  -- The trace context (a traceparent) only when the job was enqueued under one: nothing more is
  -- sent for the others.
  if f[15] then job[13] = f[15] end
  return job
end

-- Records the outcome of an ACTIVE job held by `consumer` ('completed' with its result JSON, or
-- 'cancelled' with the reason): terminal state and event. The stream entry and the finished set are
-- not touched here: the caller acknowledges the entries (`acks`, band → entries) and adds the ids to
-- their finished sets (`finished`, set key → ids) once per batch, so a batch costs one XACK, one XDEL
-- and one ZADD per band or set instead of one per job. Returns the finished set's key, or nil when
-- the job is no longer ours (a stale worker whose job was reclaimed after it stopped heartbeating:
-- its outcome is dropped). `now` as in `emit`: best the ARGV string.
local function finish(consumer, id, outcome, text, now, acks, finished)
  local k = jkey(id)
  local f = redis.call('HMGET', k, 'state', 'worker', 'band', 'entry', 'progress', 'attempts',
    'due', 'owner', 'queue')
  if f[1] ~= 'active' or f[2] ~= consumer then return nil end
  if f[3] and f[4] and f[3] ~= '' and f[4] ~= '' then
    local list = acks[f[3]]
    if not list then list = {}; acks[f[3]] = list end
    list[#list + 1] = f[4]
  end
  -- `worker`, `band` and `entry` are left as they were: no script reads them once a job is
  -- terminal (GetJob shows the worker only while ACTIVE), and a listpack hash write costs per field.
  local zkey, message, result
  if outcome == 'completed' then
    redis.call('HSET', k, 'state', 'completed', 'result', text, 'finished', now, 'updated', now)
    zkey, message, result = tag .. S_DONE, '', text
  else
    redis.call('HSET', k, 'state', 'cancelled', 'error', 'cancelled: ' .. text,
      'finished', now, 'updated', now)
    zkey, message, result = tag .. S_CANCELLED, text, ''
  end
  local ids = finished[zkey]
  if not ids then ids = {}; finished[zkey] = ids end
  ids[#ids + 1] = now
  ids[#ids + 1] = id
  emit(id, 'state_changed', now, message, result, false,
    {outcome, f[5], f[6], f[7], f[8], f[9]})
  return zkey
end

-- Adds the ids collected by `finish` to their finished sets, one ZADD per set.
local function flush_finished(finished)
  for zkey, pairs_ in pairs(finished) do
    redis.call('ZADD', zkey, unpack(pairs_))
  end
end

-- Acknowledges and deletes the stream entries collected by `finish`, one XACK and one XDEL per band.
local function flush_acks(acks)
  for band, entries in pairs(acks) do
    redis.call('XACK', rkey(band), GROUP, unpack(entries))
    redis.call('XDEL', rkey(band), unpack(entries))
  end
end
