-- complete(batch): records the outcomes of a batch of this worker's ACTIVE jobs, each 'completed'
-- (with its result JSON) or 'cancelled' (stopped by CancelJob, with the reason): terminal state and
-- event per job, then one XACK + XDEL per band, one ZADD and one retention trim per finished set. Only the worker
-- that holds a job may finish it: for a stale worker (its job was reclaimed after it stopped
-- heartbeating) that job's flag is 0 and its outcome is dropped.
-- ARGV: tag, consumer, now, keep, age_ms, then (id, outcome, text) triples. Returns one 0/1 per job.
local consumer, now = ARGV[2], tonumber(ARGV[3])
local keep, age_ms = tonumber(ARGV[4]), tonumber(ARGV[5])
local acks, finished, out = {}, {}, {}
local i = 6
while ARGV[i] do
  if finish(consumer, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[3], acks, finished) then
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  i = i + 3
end
flush_acks(acks)
flush_finished(finished)
for zkey in pairs(finished) do trim(zkey, now, keep, age_ms) end
return out
