-- allowance: create or change an account. KEYS[1] account hash, KEYS[2] its events outbox,
-- KEYS[3] (when in the same slot: not on Redis Cluster, where the store adds it next) the
-- sorted set of account ids; ARGV plan, seats, account id, and the account.plan_changed
-- event's body ('' = none: events off), written when the plan changes, in which the store
-- puts the old plan for the string "\u0000from\u0000" and, for "\u0000at\u0000" (there when the
-- caller gave no time), Redis TIME: so the event names the plan it replaced, in the same step.
-- Bumps the version so that an in-flight slow-path decision made under the old plan retries.
-- Returns 1 when the account was created, else 0; or, having written an event, {0, outbox
-- entry, ...} for the relay (apply.lua's outbox).
local old = redis.call('HGET', KEYS[1], 'p')
redis.call('HSET', KEYS[1], 'p', ARGV[1], 's', ARGV[2], 'id', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'v', 1)
if KEYS[3] then
    redis.call('ZADD', KEYS[3], 0, ARGV[3])
end
if not old then return 1 end
if old == ARGV[1] or ARGV[4] == '' then return 0 end
local t = redis.call('TIME')
local at = string.format('%.17g', tonumber(t[1]) + tonumber(t[2]) / 1000000)
local function put(text, token, value)
  local i, j = string.find(text, token, 1, true)
  if not i then return text end  -- (the time is in already: the caller's clock)
  return string.sub(text, 1, i - 1) .. value .. string.sub(text, j + 1)
end
local body = put(put(ARGV[4], '"\\u0000from\\u0000"', cjson.encode(old)), '"\\u0000at\\u0000"', at)
local seq = redis.call('HINCRBY', KEYS[1], 'es', 1)
redis.call('RPUSH', KEYS[2], seq .. ' ' .. body)
redis.call('HSET', KEYS[1], 'ob', 1)
local out = redis.call('LRANGE', KEYS[2], 0, -1)
table.insert(out, 1, 0)
return out
