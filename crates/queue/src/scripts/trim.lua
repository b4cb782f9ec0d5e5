-- retention sweep: trims completed, dead and cancelled jobs by count and age, so memory stays flat
-- even when no job finishes for a while. ARGV: tag, now, keep, age_ms, dead_maxlen.
local now, keep, age_ms = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
trim(tag .. S_DONE, now, keep, age_ms)
trim(tag .. S_FAILED, now, keep, age_ms)
trim(tag .. S_CANCELLED, now, keep, age_ms)
redis.call('XTRIM', tag .. S_DEAD, 'MAXLEN', '~', tonumber(ARGV[5]))
redis.call('ZREMRANGEBYSCORE', tag .. S_WORKERS, '-inf', now - 3600000)
return 1
