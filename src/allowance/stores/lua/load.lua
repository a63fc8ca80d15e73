-- allowance slow path, step 1: read an account's state and the time, for Python to decide on.
-- KEYS[1] account hash, KEYS[2] counters string, KEYS[3..] records the operation will read
-- (an idempotency record, a reservation record). ARGV[1]: now ('' = Redis TIME).
-- Returns {} when the account does not exist, else
-- {now, version, plan, seats, nh, holds, counters, terms, record...} ('' for a missing one;
-- terms: the account's own, adjust.py).
local a = redis.call('HMGET', KEYS[1], 'p', 's', 'v', 'nh', 'h', 't')
if not a[1] then return {} end
local now = ARGV[1]
if now == '' then
  local t = redis.call('TIME')
  now = string.format('%.17g', tonumber(t[1]) + tonumber(t[2]) / 1000000)
end
local out = {now, a[3] or '0', a[1], a[2], a[4] or '', a[5] or '', redis.call('GET', KEYS[2]) or '',
  a[6] or ''}
for k = 3, #KEYS do out[#out + 1] = redis.call('GET', KEYS[k]) or '' end
return out
