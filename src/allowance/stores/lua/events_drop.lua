-- allowance: the sweep's drop of events past retention (redis_events.too_old picks them, the
-- oldest first). KEYS[1] the log; for the event ARGV[i] ("<id>-0"), KEYS[2i] its account's
-- index and KEYS[2i + 1] the account's stream from before there was an index (relay.lua,
-- events_page.lua). A sorted set left empty goes by itself; a stream does not (~370 bytes
-- each, for every account that ever had an event), so one emptied here is deleted. One slot
-- (the log's tag), so atomic with relay.lua. Returns how many events left the log.
local dropped = 0
for i, id in ipairs(ARGV) do
  dropped = dropped + redis.call('XDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2 * i], string.match(id, '^(%d+)'))
  redis.call('XDEL', KEYS[2 * i + 1], id)
end
for i = 1, #ARGV do
  local stream = KEYS[2 * i + 1]
  if redis.call('XLEN', stream) == 0 then redis.call('DEL', stream) end
end
return dropped
