-- allowance: relay an account's outbox entries (apply.lua, account.lua) into the store's
-- event log, in the events' own slot (on Redis Cluster another node's than the account's).
-- KEYS[1] the log stream, KEYS[2] the last event id, KEYS[3] hash: account -> the last
-- sequence number relayed, KEYS[4] the account's stream. ARGV[1] account id, then the
-- outbox entries. Returns the highest sequence number relayed (relay.lua).
--RELAY--
local entries = {}
for i = 2, #ARGV do entries[#entries + 1] = ARGV[i] end
return relay(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], entries)
