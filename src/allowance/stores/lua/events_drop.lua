-- allowance: the sweep's drop of events past retention (redis_events.too_old picks them, the
-- oldest first). KEYS[1] the log; KEYS[i + 1] the stream of the account of the event ARGV[i].
-- An account's stream left empty is deleted: XDEL keeps an empty stream (~370 bytes), and the
-- accounts that ever had an event only grow. One slot (the log's tag), so atomic with relay.lua:
-- a relay either came first (the stream is not empty) or makes the stream anew.
-- Returns how many events left the log.
local dropped = 0
for i, id in ipairs(ARGV) do
  dropped = dropped + redis.call('XDEL', KEYS[1], id)
  redis.call('XDEL', KEYS[i + 1], id)
end
for i = 2, #KEYS do
  if redis.call('XLEN', KEYS[i]) == 0 then redis.call('DEL', KEYS[i]) end
end
return dropped
