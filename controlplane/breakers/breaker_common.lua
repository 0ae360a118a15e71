-- Shared by every breaker script (prepended to each by redis.py): gobreaker's
-- state machine over one breaker's hash, mirroring agent/breaker.py rule for
-- rule. See docs/breaker-state.md.
--
-- A context `c` names the keys of one breaker and the time:
--   c.state (hash), c.leases (hash lease id -> expiry ms), c.events (stream of
--   the partition), c.deadlines (zset of the partition), c.recent (list),
--   c.qfail (zset, score 0: instances with a failure in the window) and
--   c.qseen (set: instances with any outcome in the window), both for quorum
--   policies only, c.now (ms), c.maxlen (stream MAXLEN ~), c.out (events
--   produced, returned).
-- Times are integer milliseconds; -1 means "none". A quorum policy's state
-- also holds `qmin` and `qshare` (the text the server sent); other breakers'
-- have neither field, and their scripts never touch c.qfail / c.qseen.

local RECENT = 100
local NUMERIC = {'gen', 'req', 'ts', 'tf', 'cs', 'cf', 'expiry', 'max_requests',
                 'interval', 'timeout', 'ov_exp', 'updated'}

local function int(x)
  return string.format('%d', x)
end

local function now_ms(override)
  if override ~= nil and override ~= '' then
    return tonumber(override)  -- tests only: an injected clock
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function load_state(key)
  local raw = redis.call('HGETALL', key)
  if #raw == 0 then
    return nil
  end
  local s = {}
  for i = 1, #raw, 2 do
    s[raw[i]] = raw[i + 1]
  end
  for _, field in ipairs(NUMERIC) do
    s[field] = tonumber(s[field])
  end
  return s
end

local function save_state(c, s)
  redis.call('HSET', c.state,
    'id', s.id, 'state', s.state, 'gen', int(s.gen),
    'req', int(s.req), 'ts', int(s.ts), 'tf', int(s.tf), 'cs', int(s.cs), 'cf', int(s.cf),
    'expiry', int(s.expiry), 'name', s.name, 'max_requests', int(s.max_requests),
    'interval', int(s.interval), 'timeout', int(s.timeout),
    'interval_s', s.interval_s, 'timeout_s', s.timeout_s, 'trip', s.trip,
    'ov', s.ov, 'ov_reason', s.ov_reason, 'ov_exp', int(s.ov_exp), 'ov_by', s.ov_by,
    'updated', int(s.updated))
  if s.qmin ~= nil then
    redis.call('HSET', c.state, 'qmin', s.qmin, 'qshare', s.qshare)
  end
end

local function effective(s)
  if s.ov == 'force_open' then
    return 'open'
  elseif s.ov ~= '' then
    return 'closed'
  end
  return s.state
end

local function max_requests(s)
  return math.max(1, s.max_requests)
end

local function default_expiry(s, now)
  if s.state == 'closed' then
    if s.interval > 0 then
      return now + s.interval
    end
    return -1
  elseif s.state == 'open' then
    return now + s.timeout
  end
  return -1
end

-- A new window: counts to zero, expiry for the current state (gobreaker's
-- toNewGeneration, minus the generation: agents only see state changes). A
-- quorum policy's instance sets are emptied when a new *closed* window starts;
-- while open and half-open they keep naming the instances whose failures
-- opened the breaker.
local function new_window(c, s)
  s.req, s.ts, s.tf, s.cs, s.cf = 0, 0, 0, 0, 0
  s.expiry = default_expiry(s, c.now)
  if s.qmin ~= nil and s.state == 'closed' then
    redis.call('DEL', c.qfail, c.qseen)
  end
end

-- Bumps the generation and appends the event to the stream and the recent list.
local function emit(c, s, from, cause, instance, detail)
  s.gen = s.gen + 1
  local to = effective(s)
  local open_until = ''
  if to == 'open' and s.state == 'open' and s.expiry >= 0 then
    open_until = int(s.expiry)
  end
  local sid = redis.call('XADD', c.events, 'MAXLEN', '~', c.maxlen, '*',
    'id', s.id, 'from', from, 'to', to, 'gen', int(s.gen), 'cause', cause,
    'at', int(c.now), 'inst', instance, 'detail', detail, 'open_until', open_until)
  local event = {sid, s.id, from, to, int(s.gen), cause, int(c.now), instance, detail, open_until}
  redis.call('LPUSH', c.recent, cjson.encode(event))
  redis.call('LTRIM', c.recent, 0, RECENT - 1)
  table.insert(c.out, event)
end

local function set_state(c, s, to, cause, instance)
  if s.state == to then
    return
  end
  local from = effective(s)
  s.state = to
  new_window(c, s)
  -- Leases belong to one half-open period.
  redis.call('DEL', c.leases)
  redis.call('ZREM', c.deadlines, 'l|' .. s.id)
  if to == 'open' then
    redis.call('ZADD', c.deadlines, s.expiry, 'o|' .. s.id)
  else
    redis.call('ZREM', c.deadlines, 'o|' .. s.id)
  end
  emit(c, s, from, cause, instance, '')
end

-- gobreaker's currentState: a closed window or an open timeout that has
-- passed (strictly) takes effect.
local function refresh(c, s)
  if s.expiry < 0 or not (s.expiry < c.now) then
    return
  end
  if s.state == 'closed' then
    new_window(c, s)
  elseif s.state == 'open' then
    set_state(c, s, 'half-open', 'timeout', '')
  end
end

-- Drops leases never reported in time; each gives its half-open slot back.
local function expire_leases(c, s)
  local raw = redis.call('HGETALL', c.leases)
  local expired, earliest = 0, nil
  for i = 1, #raw, 2 do
    local at = tonumber(raw[i + 1])
    if at < c.now then
      redis.call('HDEL', c.leases, raw[i])
      expired = expired + 1
    elseif earliest == nil or at < earliest then
      earliest = at
    end
  end
  if expired > 0 and s.state == 'half-open' then
    s.req = math.max(0, s.req - expired)
  end
  if earliest ~= nil then
    redis.call('ZADD', c.deadlines, earliest, 'l|' .. s.id)
  else
    redis.call('ZREM', c.deadlines, 'l|' .. s.id)
  end
end

-- The context of breaker `id` of the partition whose keys start with `prefix`
-- (same hash tag, same slot), sharing `c`'s stream, deadlines, time and output.
local function breaker_context(prefix, id, c)
  return {state = prefix .. 'state:' .. id, leases = prefix .. 'leases:' .. id,
          events = c.events, deadlines = c.deadlines, recent = prefix .. 'recent:' .. id,
          qfail = prefix .. 'qfail:' .. id, qseen = prefix .. 'qseen:' .. id,
          now = c.now, maxlen = c.maxlen, out = c.out}
end

-- A breaker seen for the first time: closed, zero counts, generation 0, no
-- override, listed in the partition's index. The caller sets its policy.
local function create_state(c, id, interval, index)
  local s = {id = id, state = 'closed', gen = 0, ov = '', ov_reason = '', ov_exp = -1, ov_by = '',
             interval = interval}
  new_window(c, s)
  redis.call('SADD', index, id)
  return s
end

-- The policy fields, as the server sent them (qmin '' = no quorum).
local function assign_policy(s, name, max_req, interval, timeout, interval_s, timeout_s, trip,
                             qmin, qshare)
  s.name, s.max_requests, s.interval, s.timeout = name, tonumber(max_req), interval,
    tonumber(timeout)
  s.interval_s, s.timeout_s, s.trip = interval_s, timeout_s, trip
  if qmin == '' then
    s.qmin, s.qshare = nil, nil
  else
    s.qmin, s.qshare = qmin, qshare
  end
end

-- Agents must hear of every change of the override itself (not only of the
-- effective state): force-closed on a closed breaker still admits an instance
-- whose own breaker is open. Setting the same override again (a new reason
-- or expiry) is not an event. `exp` is ms, -1 until cleared.
local function set_override(c, s, ov, reason, exp, by, detail)
  local before, had = effective(s), s.ov
  s.ov, s.ov_reason, s.ov_by, s.ov_exp = ov, reason, by, exp
  if exp >= 0 then
    redis.call('ZADD', c.deadlines, exp, 'v|' .. s.id)
  else
    redis.call('ZREM', c.deadlines, 'v|' .. s.id)
  end
  if had ~= ov then
    emit(c, s, before, 'override', '', detail)
  end
end

-- The encoded target of an encoded breaker id: the id without its last part
-- (the encoding leaves no '/' inside a part).
local function target_of(id)
  return string.match(id, '^(.*)/[^/]*$')
end

-- The target override in force for breaker `id`, from the partition's copy in
-- `targetov` (a hash: encoded target -> JSON {ov, reason, exp, by, detail}),
-- or nil. An expired one is ignored (advance forgets it).
local function target_rule(c, targetov, id)
  local raw = redis.call('HGET', targetov, target_of(id))
  if not raw then
    return nil
  end
  local rule = cjson.decode(raw)
  rule.exp = tonumber(rule.exp)
  if rule.exp >= 0 and rule.exp < c.now then
    return nil
  end
  return rule
end

local function clear_override(c, s, detail)
  local before, had = effective(s), s.ov
  s.ov, s.ov_reason, s.ov_exp, s.ov_by = '', '', -1, ''
  redis.call('ZREM', c.deadlines, 'v|' .. s.id)
  if s.state == 'open' then
    -- Its deadline may have been skipped while the override froze the machine.
    redis.call('ZADD', c.deadlines, s.expiry, 'o|' .. s.id)
  end
  if had ~= '' then
    emit(c, s, before, 'override', '', detail)
  end
end

