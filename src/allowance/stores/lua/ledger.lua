-- append_rows(account, stream, now, keep, bodies): ledger rows (ledger.py, their bodies as
-- JSON text) onto the account's stream, in the order given. Ids are "<ms>-<n>" from the
-- time in ms, never below the last id (field lr of the account hash), so a clock stepped
-- back goes on from it; rows from before (now - keep) go first (MINID, exactly), and the
-- stream lives keep seconds after its last row.
local function append_rows(account, stream, now, keep, bodies)
  if #bodies == 0 then return end
  local ms, n = math.floor(now * 1000), -1
  local last = redis.call('HGET', account, 'lr')
  if last then
    local last_ms, last_n = string.match(last, '^(%d+)-(%d+)$')
    if ms <= tonumber(last_ms) then ms, n = tonumber(last_ms), tonumber(last_n) end
  end
  local floor = string.format('%d', math.max(0, ms - math.floor(keep * 1000)))
  for _, body in ipairs(bodies) do
    n = n + 1
    redis.call('XADD', stream, 'MINID', floor, string.format('%d-%d', ms, n), 'r', body)
  end
  redis.call('HSET', account, 'lr', string.format('%d-%d', ms, n))
  redis.call('PEXPIRE', stream, string.format('%d', math.ceil(keep * 1000)))
end
