-- allowance: create or change an account. KEYS[1] account hash, KEYS[2] its events outbox,
-- KEYS[3] its ledger list, KEYS[4] (when in the same slot: not on Redis Cluster, where the
-- store adds it next) the sorted set of account ids; ARGV plan, seats, account id, the
-- account.plan_changed event's body ('' = none: events off), written when the plan changes,
-- the ledger's plan_change row ('' = none: the ledger off), written when the plan or the
-- seats change, how long the ledger keeps rows (s), and the time ('' = Redis TIME). In both
-- bodies the store puts the old plan for the string "\u0000from\u0000" and, for
-- "\u0000at\u0000" (there when the caller gave no time), the time: so they name the plan
-- replaced, in the same step.
-- Bumps the version so that an in-flight slow-path decision made under the old plan retries.
-- Returns 1 when the account was created, else 0; or, having written an event, {0, outbox
-- entry, ...} for the relay (apply.lua's outbox).
--LEDGER--
local was = redis.call('HMGET', KEYS[1], 'p', 's')
local old, old_seats = was[1], was[2]
redis.call('HSET', KEYS[1], 'p', ARGV[1], 's', ARGV[2], 'id', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'v', 1)
if KEYS[4] then
    redis.call('ZADD', KEYS[4], 0, ARGV[3])
end
if not old then return 1 end
local changed = old ~= ARGV[1]
if not changed and old_seats == ARGV[2] then return 0 end
if not (ARGV[4] ~= '' and changed) and ARGV[5] == '' then return 0 end
local now
if ARGV[7] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[7])
end
local at = string.format('%.17g', now)
local function put(text, token, value)
  local i, j = string.find(text, token, 1, true)
  if not i then return text end  -- (the time is in already: the caller's clock)
  return string.sub(text, 1, i - 1) .. value .. string.sub(text, j + 1)
end
local function filled(text)
  return put(put(text, '"\\u0000from\\u0000"', cjson.encode(old)), '"\\u0000at\\u0000"', at)
end
if ARGV[5] ~= '' then
  append_rows(KEYS[1], KEYS[3], now, tonumber(ARGV[6]), {filled(ARGV[5])})
end
if not changed or ARGV[4] == '' then return 0 end
local seq = redis.call('HINCRBY', KEYS[1], 'es', 1)
redis.call('RPUSH', KEYS[2], seq .. ' ' .. filled(ARGV[4]))
redis.call('HSET', KEYS[1], 'ob', 1)
local out = redis.call('LRANGE', KEYS[2], 0, -1)
table.insert(out, 1, 0)
return out
