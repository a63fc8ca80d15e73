-- allowance: a page of one account's events (Store.events(account=...)): at most ARGV[2] with
-- an id above ARGV[1], oldest first, as XRANGE entries. KEYS[1] the log; KEYS[2] the account's
-- index (its event ids, relay.lua); KEYS[3] its stream of the events relayed before there was
-- an index (a stream per account, with the bodies): read, merged by id, until retention has
-- dropped them all (events_drop.lua).
local after, limit = ARGV[1], tonumber(ARGV[2])
local found = {}
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. after, '+inf', 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  local entry = redis.call('XRANGE', KEYS[1], id .. '-0', id .. '-0')[1]
  if entry then found[#found + 1] = entry end
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  local old = redis.call('XRANGE', KEYS[3], '(' .. after .. '-0', '+', 'COUNT', limit)
  for _, entry in ipairs(old) do found[#found + 1] = entry end
  local function id_of(entry) return tonumber(string.match(entry[1], '^(%d+)')) end
  table.sort(found, function(a, b) return id_of(a) < id_of(b) end)
  while #found > limit do table.remove(found) end
end
return found
