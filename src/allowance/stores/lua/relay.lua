-- relay(log, last_id, relayed, stream, account, entries): an account's outbox entries
-- ("seq body", in sequence order) into the store's event log. log: the log stream; last_id:
-- the last event id; relayed: hash account -> last sequence number relayed; stream: the
-- account's stream (same ids). An entry at or below the account's relayed sequence was
-- relayed before (a process stopped before trimming its outbox): skipped, so none is logged
-- twice. Ids come from one counter, so they increase in the order entries reach the log.
-- Returns the highest sequence number relayed (now or before): the outbox is trimmed to it.
local function relay(log, last_id, relayed, stream, account, entries)
  local done = tonumber(redis.call('HGET', relayed, account) or '0')
  local top = done
  for _, entry in ipairs(entries) do
    local seq, body = string.match(entry, '^(%d+) (.*)$')
    seq = tonumber(seq)
    if seq > done then
      local id = redis.call('INCR', last_id) .. '-0'
      redis.call('XADD', log, id, 'b', body)
      redis.call('XADD', stream, id, 'b', body)
      done = seq
    end
    if seq > top then top = seq end
  end
  redis.call('HSET', relayed, account, done)
  return top
end
