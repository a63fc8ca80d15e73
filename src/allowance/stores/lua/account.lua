-- allowance: create or change an account. KEYS[1] account hash; ARGV plan, seats, account id.
-- Bumps the version so that an in-flight slow-path decision made under the old plan retries.
-- Returns 1 when the account was created.
local existed = redis.call('EXISTS', KEYS[1])
redis.call('HSET', KEYS[1], 'p', ARGV[1], 's', ARGV[2], 'id', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'v', 1)
return 1 - existed
