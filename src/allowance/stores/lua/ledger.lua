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
-- in the order given. The rows from before (now - keep) are dropped, and the list's lifetime
-- set to keep and a hundredth after now, when the list is new and at the first append in
-- each hundredth of keep, not at every append (two calls fewer a decision): a row goes at
-- most keep / 100 after its retention here (the sweep drops it on time), and the list
-- outlives its last row by at least keep.
local function append_rows(account, list, now, keep, bodies)
  if #bodies == 0 then return end
  local ms, n, last_ms = math.floor(now * 1000), -1, nil
  local last = redis.call('HGET', account, 'lr')
  if last then
    local lm, ln = string.match(last, '^(%d+)-(%d+)$')
    last_ms = tonumber(lm)
    if ms <= last_ms then ms, n = last_ms, tonumber(ln) end
  end
  local entries = {}
  for i, body in ipairs(bodies) do
    n = n + 1
    entries[i] = string.format('%d-%d ', ms, n) .. body
  end
  local length = redis.call('RPUSH', list, unpack(entries))
  redis.call('HSET', account, 'lr', string.format('%d-%d', ms, n))
  local keep_ms = math.floor(keep * 1000)
  local part = math.max(1, math.floor(keep_ms / 100))
  if length == #bodies or not last_ms or math.floor(ms / part) ~= math.floor(last_ms / part) then
    trim_rows(list, ms - keep_ms)
    redis.call('PEXPIRE', list, string.format('%d', keep_ms + part))
  end
end
