-- allowance: the sweep's trim of an account's ledger (ledger.lua). KEYS[1] the list, ARGV[1]
-- the oldest time kept, in ms. Returns how many rows were dropped.
--LEDGER--
return trim_rows(KEYS[1], tonumber(ARGV[1]))
