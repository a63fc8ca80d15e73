-- allowance slow path, step 2: write what Python decided, only if nobody wrote in between.
-- Every write to an account's keys bumps its version `v`, so a stale decision is refused and
-- Python retries on fresh state.
-- KEYS[1] account hash, KEYS[2] counters string, KEYS[3] event marks hash, KEYS[4] events
-- outbox list, then (when ARGV[8] is '1': not on Redis Cluster) the event log's four keys
-- (relay.lua), then the account's ledger list, then the other keys (the account's
-- records, per-user counters)
-- ARGV: expected version, counters ('=' unchanged, '' delete, else value), counters TTL ms,
--       next hold expiry ('' = none), holds json ('' = none), the account's terms ('=' unchanged,
--       '' none, else adjust.py's text), the number of events E, '1' when the log's keys
--       follow (the events relayed here, in the same step) else '0', then per event (events.py):
--       mark ('' = always written), until when it stands, its TTL ms, the event's time, its
--       body; then the number of ledger rows R, how long the ledger keeps rows (s), their
--       time and R bodies (ledger.lua); then per other key: value, TTL ms, and what it must
--       still hold ('' no check: the
--       version covers it; '0' nothing; '1' .. value: that value), for a record other
--       accounts write too (a user's counters across accounts)
-- An event is written only when no event of its mark stands (the mark's until > its time),
-- with the account's next event sequence number, to the outbox ("seq body"), from where
-- redis_events.py relays it to the store's event log (or this script, where the log's keys
-- are in reach); field `ob` says the outbox holds some.
-- Returns 0 when the version or a checked key moved; else 1, or with events left in the
-- outbox {1, entry, ...} for the relay.
--RELAY--
--LEDGER--
if (redis.call('HGET', KEYS[1], 'v') or '0') ~= ARGV[1] then return 0 end
local nevents, inline = tonumber(ARGV[7]), ARGV[8] == '1'
local ledger = inline and 9 or 5  -- KEYS[ledger]: the ledger list
local first = ledger + 1  -- KEYS[first..]: the other keys
local rows_at = 9 + 5 * nevents  -- ARGV[rows_at]: the number of ledger rows
local nrows = tonumber(ARGV[rows_at])
local base = rows_at + 2 + nrows  -- ARGV[base + 3 * (k - first + 1) - 2 ..]: KEYS[k]'s triple
for k = first, #KEYS do
  local expect = ARGV[base + 3 * (k - first + 1)]
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
for k = first, #KEYS do
  local at = base + 3 * (k - first + 1)
  redis.call('SET', KEYS[k], ARGV[at - 2], 'PX', ARGV[at - 1])
end
redis.call('HINCRBY', KEYS[1], 'v', 1)
if nrows > 0 then
  append_rows(KEYS[1], KEYS[ledger], tonumber(ARGV[rows_at + 2]), tonumber(ARGV[rows_at + 1]),
    {unpack(ARGV, rows_at + 3, rows_at + 2 + nrows)})
end
if nevents == 0 then return 1 end
local written = false
for e = 0, nevents - 1 do
  local mark, till, ttl, at, body = ARGV[9 + 5 * e], ARGV[10 + 5 * e], ARGV[11 + 5 * e],
    tonumber(ARGV[12 + 5 * e]), ARGV[13 + 5 * e]
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
local out = redis.call('LRANGE', KEYS[4], 0, -1)
if inline then
  relay(KEYS[5], KEYS[6], KEYS[7], KEYS[8], redis.call('HGET', KEYS[1], 'id'), out)
  redis.call('DEL', KEYS[4])
  redis.call('HDEL', KEYS[1], 'ob')
  return 1
end
redis.call('HSET', KEYS[1], 'ob', 1)
table.insert(out, 1, 1)
return out
