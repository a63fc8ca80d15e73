-- allowance slow path, step 2: write what Python decided, only if nobody wrote in between.
-- Every write to an account's keys bumps its version `v`, so a stale decision is refused and
-- Python retries on fresh state.
-- KEYS[1] account hash, KEYS[2] counters string, KEYS[3] event marks hash, KEYS[4] events
-- outbox list, KEYS[5..] other keys (the account's records, per-user counters)
-- ARGV: expected version, counters ('=' unchanged, '' delete, else value), counters TTL ms,
--       next hold expiry ('' = none), holds json ('' = none), the account's terms ('=' unchanged,
--       '' none, else adjust.py's text), the number of events E, then per event (events.py):
--       mark ('' = always written), until when it stands, its TTL ms, the event's time, its
--       body; then per other key: value, TTL ms, and what it must still hold ('' no check: the
--       version covers it; '0' nothing; '1' .. value: that value), for a record other
--       accounts write too (a user's counters across accounts)
-- An event is written only when no event of its mark stands (the mark's until > its time),
-- with the account's next event sequence number, to the outbox ("seq body"), from where
-- redis_events.py relays it to the store's event log; field `ob` says the outbox holds some.
-- Returns 0 when the version or a checked key moved; else 1, or with events the outbox as
-- {1, entry, ...} for the relay.
if (redis.call('HGET', KEYS[1], 'v') or '0') ~= ARGV[1] then return 0 end
local nevents = tonumber(ARGV[7])
local base = 7 + 5 * nevents  -- ARGV[base + 3 * (k - 4) - 2 ..]: other key KEYS[k]'s triple
for k = 5, #KEYS do
  local expect = ARGV[base + 3 * (k - 4)]
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
for k = 5, #KEYS do
  local at = base + 3 * (k - 4)
  redis.call('SET', KEYS[k], ARGV[at - 2], 'PX', ARGV[at - 1])
end
redis.call('HINCRBY', KEYS[1], 'v', 1)
if nevents == 0 then return 1 end
local written = false
for e = 0, nevents - 1 do
  local mark, till, ttl, at, body = ARGV[8 + 5 * e], ARGV[9 + 5 * e], ARGV[10 + 5 * e],
    tonumber(ARGV[11 + 5 * e]), ARGV[12 + 5 * e]
  local stands = false
  if mark ~= '' then
    local old = redis.call('HGET', KEYS[3], mark)
    stands = old ~= false and tonumber(old) > at
    if not stands then
      -- marks no longer standing go (the hash stays as small as the marks in force), and the
      -- hash lives as long as its longest mark
      local all = redis.call('HGETALL', KEYS[3])
      for i = 1, #all, 2 do
        if tonumber(all[i + 1]) <= at then redis.call('HDEL', KEYS[3], all[i]) end
      end
      redis.call('HSET', KEYS[3], mark, till)
      if redis.call('PTTL', KEYS[3]) < tonumber(ttl) then redis.call('PEXPIRE', KEYS[3], ttl) end
    end
  end
  if not stands then
    local seq = redis.call('HINCRBY', KEYS[1], 'es', 1)
    redis.call('RPUSH', KEYS[4], seq .. ' ' .. body)
    written = true
  end
end
if not written and redis.call('EXISTS', KEYS[4]) == 0 then return 1 end
redis.call('HSET', KEYS[1], 'ob', 1)
local out = redis.call('LRANGE', KEYS[4], 0, -1)
table.insert(out, 1, 1)
return out
