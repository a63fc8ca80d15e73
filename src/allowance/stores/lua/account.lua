-- allowance: create or change an account. KEYS[1] account hash, KEYS[2] (when in the same
-- slot: not on Redis Cluster, where the store adds it next) the sorted set of account ids;
-- ARGV plan, seats, account id.
-- Bumps the version so that an in-flight slow-path decision made under the old plan retries.
-- Returns 1 when the account was created.
local existed = redis.call('EXISTS', KEYS[1])
redis.call('HSET', KEYS[1], 'p', ARGV[1], 's', ARGV[2], 'id', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'v', 1)
if KEYS[2] then
    redis.call('ZADD', KEYS[2], 0, ARGV[3])
end
return 1 - existed
