-- allowance: relay an account's outbox entries (apply.lua) into the store's event log, all
-- in the events' own slot. KEYS[1] the log stream, KEYS[2] the last event id, KEYS[3] hash:
-- account -> the last sequence number relayed, KEYS[4] the account's stream (same ids).
-- ARGV[1] account id, then the outbox entries ("seq body", in sequence order).
-- An entry at or below the account's relayed sequence was relayed before (by a process that
-- stopped before trimming the outbox, or by a sweep): skipped, so none is logged twice. Ids
-- come from one counter, so they increase in the order entries reach the log.
-- Returns the highest sequence number relayed (now or before): the outbox is trimmed to it.
local done = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
local top = done
for i = 2, #ARGV do
  local seq, body = string.match(ARGV[i], '^(%d+) (.*)$')
  seq = tonumber(seq)
  if seq > done then
    local id = redis.call('INCR', KEYS[2]) .. '-0'
    redis.call('XADD', KEYS[1], id, 'b', body)
    redis.call('XADD', KEYS[4], id, 'b', body)
    done = seq
  end
  if seq > top then top = seq end
end
redis.call('HSET', KEYS[3], ARGV[1], done)
return top
