-- lease: take or renew a lease held by `holder` for `ms`. ARGV: tag, holder, ms; KEYS[1] the lease.
-- Returns 1 when `holder` holds it after the call.
if redis.call('GET', KEYS[1]) == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) then return 1 end
return 0
