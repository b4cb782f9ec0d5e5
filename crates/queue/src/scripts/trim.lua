-- retention sweep: trims completed, dead and cancelled jobs by count and age, so memory stays flat
-- even when no job finishes for a while. ARGV: tag, now, keep, age_ms, dead_maxlen.
local now, keep, age_ms = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
trim(tag .. ':done', now, keep, age_ms)
trim(tag .. ':failed', now, keep, age_ms)
trim(tag .. ':cancelled', now, keep, age_ms)
redis.call('XTRIM', tag .. ':dead', 'MAXLEN', '~', tonumber(ARGV[5]))
redis.call('ZREMRANGEBYSCORE', tag .. ':workers', '-inf', now - 3600000)
return 1
