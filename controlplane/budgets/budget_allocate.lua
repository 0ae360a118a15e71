-- One refresh of one fleet budget, atomically: controlplane/budgets/allocation.py
-- (refresh_rows) step for step, in the same order and with the same sort
-- orders, so both homes compute the same floats (a differential test checks it).
--
-- KEYS: 1 instances hash ("i:<instance>" rows, "gen", "policy", "at"),
--       2 totals hash (controlplane/budgets/totals.py's ring)
-- ARGV: 1 now seconds ('' = Redis TIME; tests only), 2 fleet rate R,
--       3 lease, 4 min share m, 5 headroom h, 6 tau, 7 idle_after, 8 hysteresis,
--       9 policy (JSON, kept for describe), 10 key TTL seconds, 11 totals slots,
--       12 demand hold, then counted groups: holders (id), usage (id, demand, admitted, refused,
--       first attempts), acks (id, generation), departed (id)
-- Row: "demand demand_at seen left granted generation acked g1 s1 g2 s2 ..."
--      (numbers as %.17g: they read back exactly)
-- Returns {generation, fleet size, free, now, id1, share1, generation1, ...}

local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local rate, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
local min_share, headroom, tau = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local idle_after, hysteresis = tonumber(ARGV[7]), tonumber(ARGV[8])
local policy, ttl, slots = ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11])
local demand_hold = tonumber(ARGV[12])
local TINY, MAX_OUTSTANDING, MIN_SPAN = 1e-12, 16, 0.001

local function fmt(x)
  return string.format('%.17g', x)
end

local function int(x)
  return string.format('%d', x)
end

-- Byte order, as Python orders str (Lua's < follows the locale's collation).
local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    keys[#keys + 1] = k
  end
  table.sort(keys, before)
  return keys
end

-- ---- the table -------------------------------------------------------------

local rows, dirty = {}, {}
local generation = 0
local stored = redis.call('HGETALL', KEYS[1])
for i = 1, #stored, 2 do
  local field, value = stored[i], stored[i + 1]
  if field == 'gen' then
    generation = tonumber(value)
  elseif string.sub(field, 1, 2) == 'i:' then
    local v = {}
    for word in string.gmatch(value, '%S+') do
      v[#v + 1] = tonumber(word)
    end
    local row = {demand = v[1], demand_at = v[2], seen = v[3], left = v[4], granted = v[5],
                 generation = v[6], acked = v[7], out = {}}
    for j = 8, #v, 2 do
      row.out[#row.out + 1] = {v[j], v[j + 1]}
    end
    rows[string.sub(field, 3)] = row
  end
end

local function new_row()
  return {demand = 0, demand_at = 0, seen = 0, left = 0, granted = 0, generation = 0,
          acked = 0, out = {}}
end

local function held(row)
  if #row.out > 0 then
    return row.out[1][2]
  end
  return 0
end

-- Undecayed for demand_hold (the owner replica's refresh period), then decaying.
local function demand_now(row)
  if row.demand_at <= 0 then
    return 0
  end
  local age = now - row.demand_at
  if age > idle_after then
    return 0
  end
  return row.demand * math.exp(-math.max(0, age - demand_hold) / tau)
end

-- The estimate's own state: what a new report adds to.
local function decayed(row)
  if row.demand_at <= 0 or now - row.demand_at > idle_after then
    return 0
  end
  return row.demand * math.exp(-math.max(0, now - row.demand_at) / tau)
end

local function grant(row, share)
  generation = generation + 1
  row.granted = share
  row.generation = generation
  local kept = {}
  for _, g in ipairs(row.out) do
    if g[2] > share then
      kept[#kept + 1] = g
    end
  end
  kept[#kept + 1] = {generation, share}
  while #kept > MAX_OUTSTANDING do
    local merged = {kept[2][1], kept[1][2]}
    table.remove(kept, 1)
    kept[1] = merged
  end
  row.out = kept
end

-- ---- the arguments ---------------------------------------------------------

local i = 13
local function group(width)
  local n = tonumber(ARGV[i])
  local items = {}
  for j = 0, n - 1 do
    local item = {}
    for w = 1, width do
      item[w] = ARGV[i + 1 + j * width + w - 1]
    end
    items[#items + 1] = item
  end
  i = i + 1 + n * width
  return items
end
local holders, usage, acks, departed = group(1), group(5), group(2), group(1)

local function by_id(items)
  local map = {}
  for _, item in ipairs(items) do
    map[item[1]] = item
  end
  return map
end

-- ---- totals ----------------------------------------------------------------

if #usage > 0 then
  local second = math.floor(now)
  local slot = second % slots
  local current = redis.call('HGET', KEYS[2], 't' .. slot)
  if current ~= int(second) then
    redis.call('HSET', KEYS[2], 't' .. slot, int(second), 'a' .. slot, '0',
               'r' .. slot, '0', 'f' .. slot, '0')
  end
  local a, r, f = 0, 0, 0
  for _, u in ipairs(usage) do
    a, r, f = a + tonumber(u[3]), r + tonumber(u[4]), f + tonumber(u[5])
  end
  redis.call('HINCRBY', KEYS[2], 'a' .. slot, a)
  redis.call('HINCRBY', KEYS[2], 'r' .. slot, r)
  redis.call('HINCRBY', KEYS[2], 'f' .. slot, f)
  redis.call('EXPIRE', KEYS[2], ttl)
end

-- ---- refresh_rows ----------------------------------------------------------

local departed_ids = by_id(departed)
for _, id in ipairs(sorted_keys(departed_ids)) do
  local row = rows[id]
  if row ~= nil and row.left <= 0 then
    row.left = now
  end
end
for _, id in ipairs(sorted_keys(by_id(holders))) do
  local row = rows[id]
  if row == nil then
    row = new_row()
    rows[id] = row
  end
  row.seen = now
  row.left = 0
end
local usage_by_id = by_id(usage)
for _, id in ipairs(sorted_keys(usage_by_id)) do
  local row = rows[id]
  if row ~= nil and row.left <= 0 then
    row.seen = now
    local count = tonumber(usage_by_id[id][2])
    if count > 0 then
      local span = tau
      if row.demand_at > 0 then
        span = now - row.demand_at
      end
      span = math.min(math.max(span, MIN_SPAN), idle_after)
      local keep = math.exp(-span / tau)
      row.demand = decayed(row) + count / span * (1.0 - keep)
      row.demand_at = now
    end
  end
end
local acks_by_id = by_id(acks)
for _, id in ipairs(sorted_keys(acks_by_id)) do
  local row = rows[id]
  local g = tonumber(acks_by_id[id][2])
  if row ~= nil and g <= row.generation and g > row.acked then
    row.acked = g
    local kept = {}
    for _, o in ipairs(row.out) do
      if o[1] >= g then
        kept[#kept + 1] = o
      end
    end
    row.out = kept
  end
end
local dropped = {}
for _, id in ipairs(sorted_keys(rows)) do
  local row = rows[id]
  if (row.left > 0 and now >= row.left + lease) or (row.left <= 0 and now - row.seen > 2 * lease) then
    rows[id] = nil
    dropped[#dropped + 1] = 'i:' .. id
  end
end

local fleet = {}
for _, id in ipairs(sorted_keys(rows)) do
  if rows[id].left <= 0 then
    fleet[#fleet + 1] = id
  end
end

-- allocation.water_fill: max-min of capacity over wants (ids in fleet order).
local function water_fill(wants, capacity)
  local targets = {}
  local total = 0.0
  for _, id in ipairs(fleet) do
    total = total + wants[id]
  end
  if total <= capacity then
    for _, id in ipairs(fleet) do
      targets[id] = wants[id]
    end
    return targets
  end
  local order = {}
  for _, id in ipairs(fleet) do
    order[#order + 1] = id
  end
  table.sort(order, function(a, b)
    if wants[a] ~= wants[b] then
      return wants[a] < wants[b]
    end
    return before(a, b)
  end)
  local remaining = capacity
  for index, id in ipairs(order) do
    local level = remaining / (#order - index + 1)
    if wants[id] <= level then
      targets[id] = wants[id]
      remaining = remaining - wants[id]
    else
      for k = index, #order do
        targets[order[k]] = level
      end
      break
    end
  end
  return targets
end

-- allocation.fleet_targets: demand first, headroom only out of what is left.
local function fleet_targets()
  local size = #fleet
  local targets = {}
  if rate <= 0 then
    for _, id in ipairs(fleet) do
      targets[id] = math.min(1.0, 1.0 / size)
    end
    return targets, false
  end
  local floor = min_share / size
  local base, extra = {}, {}
  for _, id in ipairs(fleet) do
    local demand = demand_now(rows[id]) / rate
    base[id] = math.min(1.0, math.max(floor, demand))
    extra[id] = math.max(0.0, math.min(1.0, math.max(floor, demand * (1.0 + headroom)))
                         - base[id])
  end
  targets = water_fill(base, 1.0)
  local left = 1.0
  for _, id in ipairs(fleet) do
    left = left - targets[id]
  end
  if left <= TINY then
    return targets, true
  end
  local more = water_fill(extra, left)
  for _, id in ipairs(fleet) do
    targets[id] = targets[id] + more[id]
  end
  return targets, false
end

-- allocation._threshold: hysteresis only while the budget is not saturated.
local function threshold(saturated, share)
  if saturated then
    return TINY
  end
  return math.max(TINY, hysteresis * share)
end

if #fleet > 0 then
  local targets, saturated = fleet_targets()

  for _, id in ipairs(fleet) do
    local row = rows[id]
    local target = targets[id]
    if row.generation > 0 and row.granted - target > threshold(saturated, row.granted) then
      grant(row, target)
    end
  end

  local free = 1.0
  for _, id in ipairs(sorted_keys(rows)) do
    free = free - held(rows[id])
  end
  local raising = {}
  for _, id in ipairs(fleet) do
    local row = rows[id]
    if row.generation == 0 or targets[id] - row.granted > threshold(saturated, targets[id]) then
      raising[#raising + 1] = id
    end
  end
  table.sort(raising, function(a, b)
    if rows[a].granted ~= rows[b].granted then
      return rows[a].granted < rows[b].granted
    end
    return before(a, b)
  end)
  for _, id in ipairs(raising) do
    local row = rows[id]
    local target, h = targets[id], held(row)
    local share
    if h >= target then
      share = target
    else
      share = math.min(target, h + math.max(0.0, free))
      free = free - (share - h)
    end
    if row.generation == 0 or share - row.granted > TINY then
      grant(row, share)
    end
  end
end

local held_total = 0.0
for _, id in ipairs(sorted_keys(rows)) do
  held_total = held_total + held(rows[id])
end

-- ---- write back --------------------------------------------------------------

if #dropped > 0 then
  redis.call('HDEL', KEYS[1], unpack(dropped))
end
local writes = {'gen', int(generation), 'policy', policy, 'at', fmt(now)}
for id, row in pairs(rows) do
  local parts = {fmt(row.demand), fmt(row.demand_at), fmt(row.seen), fmt(row.left),
                 fmt(row.granted), int(row.generation), int(row.acked)}
  for _, o in ipairs(row.out) do
    parts[#parts + 1] = int(o[1])
    parts[#parts + 1] = fmt(o[2])
  end
  writes[#writes + 1] = 'i:' .. id
  writes[#writes + 1] = table.concat(parts, ' ')
end
if next(rows) == nil then
  redis.call('DEL', KEYS[1], KEYS[2])  -- no instance holds it: the budget is gone
else
  -- In chunks: unpack() of a long table overflows Lua's C stack.
  for first = 1, #writes, 1000 do
    redis.call('HSET', KEYS[1], unpack(writes, first, math.min(first + 999, #writes)))
  end
  redis.call('EXPIRE', KEYS[1], ttl)
end

local reply = {int(generation), int(#fleet), fmt(math.max(0.0, 1.0 - held_total)),
               fmt(now)}
for _, id in ipairs(fleet) do
  reply[#reply + 1] = id
  reply[#reply + 1] = fmt(rows[id].granted)
  reply[#reply + 1] = int(rows[id].generation)
end
return reply
