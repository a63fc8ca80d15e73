-- allowance fast path: decide (and, if asked, charge) a plain request in one round trip.
-- Times are epoch seconds as doubles, written with %.17g so they survive the trip exactly;
-- the arithmetic is the same IEEE arithmetic as windows.py, so Python, replaying the decision on
-- the counters returned here, reaches the same grant.
--
-- A generic interpreter of the rules compiled by rules.py: redis_common.py puts KEEP_AFTER
-- (windows.py), NPLANS, PLANS (plan name -> index) and rules_of(feature) (rules.Encoded: per
-- counter its name, window kind a|s|p, length and cost (a grant of g charges g * cost: caps,
-- soft levels and ceilings are in the counter's units); per plan its access; per counter and plan,
-- at (i - 1) * NPLANS + plan, its cap and soft level (-1: none), whether both scale with
-- the account's seats, the load factor that lowers the cap, and the most one request is
-- granted (-1: any); per counter the event levels a charge must not cross here: reach,
-- levels, level_at) where the SPEC line below
-- stands. It knows window arithmetic, caps, per-request ceilings, soft levels, costs and
-- all-or-nothing charging, no policy concept. The account's own terms (field t, adjust.py's
-- JSON: counter name -> [max or null, [[until, units], ...]]) change a counter's cap: the
-- max replaces cap × seats (before the load factor), the units of grants with now < until
-- are added after it.
--
-- KEYS[1] account hash (p plan, s seats, v version, nh next hold expiry, t terms)
-- KEYS[2] counters string  "name=start,used,t:n;t:n|name=..."
-- KEYS[2 + k] the k-th other record of the request (a user's counters, owners.py), in the
--   same format; counter i is in record rules.records[i] (0: KEYS[2])
-- KEYS[#KEYS] (when ARGV[6] is not ''): the account's ledger list
-- ARGV: now ('' = Redis TIME), amount, partial (0/1), charge (0/1), feature, the start of a
--       charge's ledger rows ('' = no ledger; ledger.head: each counter charged appends its
--       name, units and the time), how long the ledger keeps rows (s), then 4 period
--       boundaries per period counter of the feature (local estimates)
-- Returns {'unknown'} | {'slow', now} | {'slow', then load.lua's reply} (a crossing: the
--   slow path starts from it, redis_transaction.prime) | {'ok', now, counters-before,
--   granted, plan, seats, remaining ('' = none), the soft-level flag (0/1), terms
--   ('' = none), then each other record as it was before}; remaining and the flag are only
--   meaningful for a grant

--SPEC--
--LEDGER--

local acct = redis.call('HMGET', KEYS[1], 'p', 's', 'nh', 't')
if not acct[1] then return {'unknown'} end
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
local fmt = '%.17g'
local now_text = string.format(fmt, now)
if acct[3] and now >= tonumber(acct[3]) then return {'slow', now_text} end
local plan, seats = acct[1], tonumber(acct[2])
local amount, partial, charge = tonumber(ARGV[2]), ARGV[3] == '1', ARGV[4] == '1'

local plan_index = PLANS[plan]
local rules = rules_of(ARGV[5])
if not plan_index or not rules then return {'slow', now_text} end

-- records[r]: counter name -> its text, for record r (0: the account's). Only the feature's
-- counters are decoded ({start, used, entries}; an entry is {t, n, t as written}); the
-- others are written back as they were (their text).
local head = ARGV[6]
local nrecords = #KEYS - 2 - (head ~= '' and 1 or 0)  -- KEYS[3 .. 2 + nrecords]: the others
local raws, records = {}, {}
for r = 0, nrecords do
  raws[r] = redis.call('GET', KEYS[2 + r]) or ''
  records[r] = {}
end
local terms_text = acct[4] or ''
local function reply(granted, remaining, passed)
  local out = {'ok', now_text, raws[0], granted, plan, acct[2], remaining, passed, terms_text}
  for r = 1, nrecords do out[9 + r] = raws[r] end
  return out
end
if rules.access[plan_index] == 0 then return reply(0, '', 0) end
-- the account's own terms: counter name -> [max or null, [[until, units], ...]], looked up
-- by this feature's counter names only (the text holds other limits' and other keys too)
local terms = terms_text ~= '' and cjson.decode(terms_text) or {}
local function decode(body)
  local start, used, rest = string.match(body, '^([^,]*),([^,]*),(.*)$')
  local entries = {}
  for t, n in string.gmatch(rest, '([^;:]+):([^;]+)') do
    entries[#entries + 1] = {tonumber(t), tonumber(n), t}
  end
  return {start ~= '' and tonumber(start) or nil, tonumber(used), entries, start_text = start}
end
for r = 0, nrecords do
  for name, body in string.gmatch(raws[r], '([^|=]+)=([^|]*)') do
    records[r][name] = body
  end
end

-- the feature's counters with this plan's cap rules; a period counter's period is the one of
-- the caller's bounds that holds now
local limits = {}
local b = 8
for i, name in ipairs(rules.names) do
  local lim = {name = name, kind = string.sub(rules.kinds, i, i), length = rules.lengths[i],
    cost = rules.costs[i], record = rules.records[i]}
  if lim.kind == 'p' then
    for k = 0, 2 do
      local lo, hi = tonumber(ARGV[b + k]), tonumber(ARGV[b + k + 1])
      if lo <= now and now < hi then
        lim.period, lim.period_end, lim.period_text = lo, hi, ARGV[b + k]
        if k < 2 then lim.next_start, lim.next_end = hi, tonumber(ARGV[b + k + 2]) end
      end
    end
    b = b + 4
    if not lim.period then return {'slow', now_text} end
  end
  local m = (i - 1) * NPLANS + plan_index
  local cap, soft = rules.caps[m], rules.soft[m]
  if rules.scale[m] == 1 then
    if cap >= 0 then cap = cap * seats end
    if soft >= 0 then soft = soft * seats end
  end
  local own = terms[name]
  if own and type(own[1]) == 'number' then cap = own[1] end  -- the account's max, not cap × seats
  -- a load factor in force lowers the cap: floor(cap * load), the same double product as Python
  if cap >= 0 and rules.load[m] ~= 1 then cap = math.floor(cap * rules.load[m]) end
  if own and cap >= 0 then  -- the units of grants not yet ended on top
    for _, g in ipairs(own[2]) do
      if now < g[1] then cap = cap + g[2] end
    end
  end
  lim.cap, lim.soft, lim.most = cap, soft, rules.most[m]
  limits[i] = lim
end

local function used_now(lim, c)
  if not c then return 0 end
  if lim.kind == 'a' then
    if c[1] and now < c[1] + lim.length then return c[2] end
    return 0
  elseif lim.kind == 'p' then
    -- a counter of a later period (the clock stepped back) still counts: see windows.py
    if c[1] and c[1] >= lim.period then return c[2] end
    return 0
  end
  local horizon, total = now - lim.length, 0
  for _, e in ipairs(c[3]) do
    if e[1] > horizon then total = total + e[2] end
  end
  return total
end

-- floor(a / b) of whole numbers, exactly (a / b is a rounded double)
local function whole(a, b)
  if b == 1 then return a end
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end

local grant = amount
local blocked = false
for _, lim in ipairs(limits) do
  local body = records[lim.record][lim.name]
  if body then
    lim.counter = decode(body)
    local start = lim.counter[1]
    -- a counter more than one period ahead: its period's end is not among the bounds
    if lim.kind == 'p' and start and start > lim.period and start ~= lim.next_start then
      return {'slow', now_text}
    end
  end
  lim.used = used_now(lim, lim.counter)
  -- a per-request ceiling: more is denied (the engine says why), or with partial cut to it
  if lim.most >= 0 and grant * lim.cost > lim.most then
    if partial and lim.most >= lim.cost then grant = whole(lim.most, lim.cost) else blocked = true end
  end
  if lim.cap >= 0 then
    local fits = whole(lim.cap - lim.used, lim.cost)
    if fits < grant then
      if partial and fits >= 1 then grant = fits else blocked = true end
    end
  end
end
if blocked then return reply(0, '', 0) end

-- what a grant's decision needs besides the grant, so Python need not replay the engine:
-- the least remaining over the capped counters (in units of the feature), and whether a soft
-- level is passed
local remaining, passed = nil, 0
for _, lim in ipairs(limits) do
  if lim.cap >= 0 then
    local left = whole(lim.cap - lim.used, lim.cost) - grant
    if remaining == nil or left < remaining then remaining = left end
  elseif lim.soft >= 0 and lim.used + grant * lim.cost > lim.soft then
    passed = 1
  end
end
remaining = remaining == nil and '' or remaining
if not charge then return reply(grant, remaining, passed) end

-- a charge crossing an event level (events.crosses: rules.reach, levels, level_at) is left
-- to the slow path, which writes its events with it (an outbox): none is worded here. The
-- reply carries what load.lua would read (the slow path's first step), so it starts from it
local function crossing()
  local more = redis.call('HMGET', KEYS[1], 'v', 'h')
  local out = {'slow', now_text, more[1] or '0', plan, acct[2], acct[3] or '', more[2] or '',
    raws[0], terms_text}
  for r = 1, nrecords do out[9 + r] = raws[r] end
  return out
end
for i, lim in ipairs(limits) do
  if rules.reach[i] > 0 then
    local after = lim.used + grant * lim.cost
    if lim.cap >= 0 then
      if lim.cap - after < rules.reach[i] then return crossing() end
      for j = rules.level_at[i] + 1, rules.level_at[i + 1] do
        local level = rules.levels[j] * lim.cap
        if lim.used < level and level <= after then return crossing() end
      end
    elseif lim.soft >= 0 and lim.used <= lim.soft and lim.soft < after then
      return crossing()
    end
  end
end

-- the feature's counters after the charge, as text (times as they were written: %.17g
-- survives the trip exactly); the others stay as they were. expires[r]: when the last of
-- record r's charged windows closes
local expires = {}
for _, lim in ipairs(limits) do
  local c = lim.counter
  local units = grant * lim.cost
  local start_text, used, items = '', 0, ''
  local ends
  if lim.kind == 'a' then
    if c and c[1] and now < c[1] + lim.length then
      start_text, used, ends = c.start_text, c[2] + units, c[1] + lim.length
    else
      start_text, used, ends = now_text, units, now + lim.length
    end
  elseif lim.kind == 'p' then
    if c and c[1] and c[1] > lim.period then  -- the next period's counter: it stays
      start_text, used, ends = c.start_text, c[2] + units, lim.next_end
    else
      used = units
      if c and c[1] == lim.period then used = c[2] + units end
      start_text, ends = lim.period_text, lim.period_end
    end
  else
    -- the grants still in the window in time order, this one merged with a grant made at
    -- the same time or put in its place (after a clock step back it is not the last)
    local horizon, kept, total, ordered = now - lim.length, {}, 0, true
    for _, e in ipairs(c and c[3] or {}) do
      if e[1] > horizon then
        local prev = kept[#kept]
        if prev and prev[1] > e[1] then ordered = false end
        kept[#kept + 1] = e
        total = total + e[2]
      end
    end
    if not ordered then  -- written by a kernel before schema 4, which appended
      table.sort(kept, function(x, y) return x[1] < y[1] end)
    end
    local at = #kept + 1
    while at > 1 and kept[at - 1][1] >= now do at = at - 1 end
    if kept[at] and kept[at][1] == now then
      kept[at][2] = kept[at][2] + units
    else
      table.insert(kept, at, {now, units, now_text})
    end
    local texts = {}
    for i, e in ipairs(kept) do
      texts[i] = e[3] .. ':' .. string.format('%d', e[2])
    end
    used, items, ends = total + units, table.concat(texts, ';'), kept[#kept][1] + lim.length
  end
  if not expires[lim.record] or ends > expires[lim.record] then expires[lim.record] = ends end
  records[lim.record][lim.name] = start_text .. ',' .. string.format('%d', used) .. ',' .. items
end

-- write back each record charged; a key lives until KEEP_AFTER after the last window closes
-- (a clock stepping back that far still finds the usage: windows.py), or longer if it
-- already did (its other counters). TTLs are relative to `now`, so an injected clock
-- (tests, simulations) gets the same lifetimes as Redis time.
for r, ends in pairs(expires) do
  local parts = {}
  for name, body in pairs(records[r]) do
    parts[#parts + 1] = name .. '=' .. body
  end
  local key = KEYS[2 + r]
  local ttl = math.max(redis.call('PTTL', key), math.ceil((ends + KEEP_AFTER - now) * 1000), 1)
  redis.call('SET', key, table.concat(parts, '|'), 'PX', string.format('%d', ttl))
end
redis.call('HINCRBY', KEYS[1], 'v', 1)
if head ~= '' then  -- the ledger: a row per counter charged
  local rows = {}
  for i, lim in ipairs(limits) do
    rows[i] = head .. ',' .. cjson.encode(lim.name) .. ',' .. string.format('%d', grant * lim.cost)
      .. ',' .. now_text .. ']'
  end
  append_rows(KEYS[1], KEYS[#KEYS], now, tonumber(ARGV[7]), rows)
end
return reply(grant, remaining, passed)
