-- allowance: an account's events outbox (apply.lua, account.lua), in the account's slot.
-- KEYS[1] account hash, KEYS[2] outbox list.
-- ARGV[1] 'read' -> the entries ("seq body"); 'trim', ARGV[2] seq -> drops the entries up
-- to seq (relayed: redis_events.py) and, once none is left, the hash's `ob` flag; returns
-- how many are left.
if ARGV[1] == 'read' then return redis.call('LRANGE', KEYS[2], 0, -1) end
local upto = tonumber(ARGV[2])
while true do
  local head = redis.call('LINDEX', KEYS[2], 0)
  if not head or tonumber(string.match(head, '^(%d+) ')) > upto then break end
  redis.call('LPOP', KEYS[2])
end
local left = redis.call('LLEN', KEYS[2])
if left == 0 then redis.call('HDEL', KEYS[1], 'ob') end
return left
