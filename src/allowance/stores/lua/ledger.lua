-- The ledger on Redis (redis_ledger.py): each account's rows are a list in its slot, each
-- entry "<id> <body>", the id "<ms>-<n>" from the row's time in ms, never below the last id
-- (field lr of the account hash), so a clock stepped back goes on from it and ids increase
-- along the list. (A list, not a stream: a stream preallocates a 4 KiB node, a lot for an
-- account with a few rows.)
local function entry_ms(entry)
  return tonumber(string.match(entry, '^(%d+)-'))
end

-- trim_rows(list, floor): drop the rows older than floor (ms) from the head
local function trim_rows(list, floor)
  local dropped = 0
  while true do
    local first = redis.call('LINDEX', list, 0)
    if not first or entry_ms(first) >= floor then return dropped end
    redis.call('LPOP', list)
    dropped = dropped + 1
  end
end

-- append_rows(account, list, now, keep, bodies): rows (JSON text) onto the account's list,
-- in the order given, dropping those from before (now - keep); the list lives keep seconds
-- after its last row.
local function append_rows(account, list, now, keep, bodies)
  if #bodies == 0 then return end
  local ms, n = math.floor(now * 1000), -1
  local last = redis.call('HGET', account, 'lr')
  if last then
    local last_ms, last_n = string.match(last, '^(%d+)-(%d+)$')
    if ms <= tonumber(last_ms) then ms, n = tonumber(last_ms), tonumber(last_n) end
  end
  local entries = {}
  for i, body in ipairs(bodies) do
    n = n + 1
    entries[i] = string.format('%d-%d', ms, n) .. ' ' .. body
  end
  redis.call('RPUSH', list, unpack(entries))
  redis.call('HSET', account, 'lr', string.format('%d-%d', ms, n))
  trim_rows(list, ms - math.floor(keep * 1000))
  redis.call('PEXPIRE', list, string.format('%d', math.ceil(keep * 1000)))
end
