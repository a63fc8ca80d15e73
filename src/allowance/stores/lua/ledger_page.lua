-- allowance: a page of an account's ledger (ledger.lua). KEYS[1] the account's list; ARGV the
-- id after which to start ('' = from the first), the least time in ms ('' = none), how many.
-- Ids increase along the list, so the first entry after both is found by bisection. Returns
-- the entries ("<id> <body>") from there, at most that many.
--LEDGER--
local list = KEYS[1]
local after_ms, after_n = string.match(ARGV[1], '^(%d+)-(%d+)$')
after_ms, after_n = tonumber(after_ms), tonumber(after_n)
local since = ARGV[2] ~= '' and tonumber(ARGV[2]) or nil
local function wanted(entry)  -- past the cursor and not before since
  local ms, n = string.match(entry, '^(%d+)-(%d+) ')
  ms, n = tonumber(ms), tonumber(n)
  if since and ms < since then return false end
  return not after_ms or ms > after_ms or (ms == after_ms and n > after_n)
end
local low, high = 0, redis.call('LLEN', list)
while low < high do
  local mid = math.floor((low + high) / 2)
  if wanted(redis.call('LINDEX', list, mid)) then high = mid else low = mid + 1 end
end
return redis.call('LRANGE', list, low, low + tonumber(ARGV[3]) - 1)
