-- allowance on Redis Cluster: a user's record across accounts (owners.py, 'g:') lives in the
-- user's hash slot, out of reach of the account's scripts, so the transaction path writes it
-- under a lock of its own (redis_transaction.py): taken before the account is read, the
-- record written before the account's apply.lua (a crash in between over-counts, never
-- under-counts), put back as it was when apply.lua loses a race, released at the end.
-- KEYS[1] the record, KEYS[2] its lock (same hash tag)
-- ARGV[1] 'read' -> the record (KEYS[1] only)
--         'lock': ARGV[2] token, ARGV[3] lock TTL ms -> {1, record or nothing} | {0} (held)
--         'write': ARGV[2] token, ARGV[3] '0' delete | '1' .. value, ARGV[4] TTL ms -> 1 | 0
--         'unlock': ARGV[2] token -> 1 | 0 (0: the lock was not this token's: it expired)
local mode, token = ARGV[1], ARGV[2]
if mode == 'read' then return redis.call('GET', KEYS[1]) end  -- (no lock: a read-only step)
if mode == 'lock' then
  if redis.call('SET', KEYS[2], token, 'NX', 'PX', ARGV[3]) then
    return {1, redis.call('GET', KEYS[1])}
  end
  return {0}
end
if redis.call('GET', KEYS[2]) ~= token then return 0 end
if mode == 'write' then
  if ARGV[3] == '0' then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], string.sub(ARGV[3], 2), 'PX', ARGV[4])
  end
  return 1
end
redis.call('DEL', KEYS[2])
return 1
