-- allowance slow path, step 2: write what Python decided, only if nobody wrote in between.
-- Every write to an account's keys bumps its version `v`, so a stale decision is refused and
-- Python retries on fresh state.
-- KEYS[1] account hash, KEYS[2] counters string, KEYS[3..] other keys (the account's records,
-- per-user counters)
-- ARGV: expected version, counters ('=' unchanged, '' delete, else value), counters TTL ms,
--       next hold expiry ('' = none), holds json ('' = none), the account's terms ('=' unchanged,
--       '' none, else adjust.py's text), then per other key: value, TTL ms, and what it must
--       still hold ('' no check: the version covers it; '0' nothing; '1' .. value: that value),
--       for a record other accounts write too (a user's counters across accounts)
-- Returns 1 when applied, 0 when the version or a checked key moved.
if (redis.call('HGET', KEYS[1], 'v') or '0') ~= ARGV[1] then return 0 end
for k = 3, #KEYS do
  local expect = ARGV[3 * k]
  if expect ~= '' then
    local now = redis.call('GET', KEYS[k])
    if expect == '0' then
      if now then return 0 end
    elseif now ~= string.sub(expect, 2) then
      return 0
    end
  end
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[2])
elseif ARGV[2] ~= '=' then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
if ARGV[4] == '' then redis.call('HDEL', KEYS[1], 'nh') else redis.call('HSET', KEYS[1], 'nh', ARGV[4]) end
if ARGV[5] == '' then redis.call('HDEL', KEYS[1], 'h') else redis.call('HSET', KEYS[1], 'h', ARGV[5]) end
if ARGV[6] == '' then
  redis.call('HDEL', KEYS[1], 't')
elseif ARGV[6] ~= '=' then
  redis.call('HSET', KEYS[1], 't', ARGV[6])
end
for k = 3, #KEYS do
  redis.call('SET', KEYS[k], ARGV[3 * k - 2], 'PX', ARGV[3 * k - 1])
end
redis.call('HINCRBY', KEYS[1], 'v', 1)
return 1
