-- relay(log, last_id, relayed, index, account, entries): an account's outbox entries
-- ("seq body", in sequence order) into the store's event log. log: the log stream; last_id:
-- the last event id; relayed: hash account -> last sequence number relayed; index: the
-- account's event ids, a sorted set scored by id (~64 bytes for one, where a stream of its
-- own would preallocate 4 KiB). An entry at or below the account's relayed sequence was
-- relayed before (a process stopped before trimming its outbox): skipped, so none is logged
-- twice. Ids come from one counter, so they increase in the order entries reach the log.
-- Returns the highest sequence number relayed (now or before): the outbox is trimmed to it.
local function relay(log, last_id, relayed, index, account, entries)
  local done = tonumber(redis.call('HGET', relayed, account) or '0')
  local top = done
  for _, entry in ipairs(entries) do
    local seq, body = string.match(entry, '^(%d+) (.*)$')
    seq = tonumber(seq)
    if seq > done then
      local n = redis.call('INCR', last_id)
      redis.call('XADD', log, n .. '-0', 'b', body)
      redis.call('ZADD', index, n, n)
      done = seq
    end
    if seq > top then top = seq end
  end
  redis.call('HSET', relayed, account, done)
  return top
end
