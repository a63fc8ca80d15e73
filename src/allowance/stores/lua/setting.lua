-- allowance: set a store-wide setting only if it still holds what the caller read (a
-- compare-and-set: Store.swap_setting). KEYS[1] the settings hash; ARGV name, what it must
-- hold ('0' nothing, '1' .. value), the new value. Returns 1 when set, 0 when it had changed.
local now = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '0' then
  if now then return 0 end
elseif now ~= string.sub(ARGV[2], 2) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
