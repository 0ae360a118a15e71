-- Applies one agent report for one breaker (an OutcomeBatch), atomically.
--
-- KEYS: 1 state hash, 2 leases hash, 3 partition events stream,
--       4 partition deadlines zset, 5 recent events list,
--       6 quorum failing zset, 7 quorum reporting set (quorum policies only),
--       8 partition index set, 9 partition target overrides hash (read only
--       when the breaker is created: it starts with its target's override)
-- ARGV: 1 now ms ('' = Redis TIME; tests only), 2 stream MAXLEN,
--       3 encoded breaker id, 4 policy name, 5 max_requests, 6 interval ms,
--       7 timeout ms, 8 interval seconds (text), 9 timeout seconds (text),
--       10 trip source, 11 trip compiled to Lua (trip_lua.py),
--       12 instance id, 13 lease id ('' = none),
--       14 quorum min instances ('' = the policy has no quorum; '0' = no such rule),
--       15 quorum min share (text; '' = no quorum; '0.0' = no such rule),
--       16 N, the number of runs,
--       17 .. 16+N runs (+n successes, -n failures),
--       17+N .. 16+2N the instance of each run, in the same order; absent when
--       every run is ARGV[12]'s (OutcomeBatch.run_instances empty)
-- Returns the events produced, each
--   {stream id, breaker id, from, to, generation, cause, at ms, instance, detail, open_until}.

local c = {state = KEYS[1], leases = KEYS[2], events = KEYS[3], deadlines = KEYS[4],
           recent = KEYS[5], qfail = KEYS[6], qseen = KEYS[7], now = now_ms(ARGV[1]),
           maxlen = ARGV[2], out = {}}
local id, instance, lease = ARGV[3], ARGV[12], ARGV[13]
local interval, trip = tonumber(ARGV[6]), ARGV[10]
local qmin, qshare = ARGV[14], ARGV[15]
local first_run, last_run = 17, 16 + tonumber(ARGV[16])
local attributed = #ARGV > last_run

-- The instance of the run at ARGV[i].
local function run_instance(i)
  if attributed then
    return ARGV[i + last_run - first_run + 1]
  end
  return instance
end

-- Quorum policies: the run's instance joins the window's sets. q.nf / q.nr
-- are the sets' sizes once quorum_met has read them (kept current after).
local function quorum_report(q, inst, failed)
  local added = redis.call('SADD', c.qseen, inst)
  if q.nr ~= nil then
    q.nr = q.nr + added
  end
  if failed then
    added = redis.call('ZADD', c.qfail, 0, inst)
    if q.nf ~= nil then
      q.nf = q.nf + added
    end
  end
end

-- After a failure whose trip is true: do enough distinct instances fail?
local function quorum_met(q)
  if q.nf == nil then
    q.nf, q.nr = redis.call('ZCARD', c.qfail), redis.call('SCARD', c.qseen)
  end
  if q.nf < q.min then
    return false
  end
  return q.share == 0 or q.nf / q.nr >= q.share
end

local s = load_state(c.state)
local rule = nil
if s == nil then
  s = create_state(c, id, interval, KEYS[8])
  rule = target_rule(c, KEYS[9], id)
elseif s.trip ~= trip or s.interval ~= interval or (s.qmin or '') ~= qmin
    or (s.qshare or '') ~= qshare then
  -- Counts gathered under another trip, window or quorum mean nothing to the
  -- new one (new_window empties the old quorum's sets).
  s.interval = interval
  if s.state == 'closed' then
    new_window(c, s)
  end
  if qmin == '' and s.qmin ~= nil then
    redis.call('HDEL', c.state, 'qmin', 'qshare')
  end
end
assign_policy(s, ARGV[4], ARGV[5], interval, ARGV[7], ARGV[8], ARGV[9], trip, qmin, qshare)
s.updated = c.now
if rule ~= nil then  -- created under its target's override: it starts with it (frozen)
  set_override(c, s, rule.ov, rule.reason, rule.exp, rule.by, rule.detail)
end

if s.ov == '' then  -- an override freezes the machine: outcomes are dropped
  refresh(c, s)
  if s.state == 'half-open' then
    expire_leases(c, s)
    -- Only a live lease's probe counts, and a lease admits one outcome.
    if lease ~= '' and redis.call('HDEL', c.leases, lease) == 1 then
      for i = first_run, last_run do
        local run = tonumber(ARGV[i])
        if run > 0 then
          s.ts, s.cs, s.cf = s.ts + 1, s.cs + 1, 0
          if s.cs >= max_requests(s) then
            set_state(c, s, 'closed', 'probe_success', run_instance(i))
          end
          break
        elseif run < 0 then
          set_state(c, s, 'open', 'probe_failure', run_instance(i))
          break
        end
      end
    end
  elseif s.state == 'closed' and lease == '' then
    -- Each outcome is before_request + after_request; open drops the rest.
    local q = nil
    if s.qmin ~= nil then
      q = {min = tonumber(s.qmin), share = tonumber(s.qshare)}
    end
    local trip_function = nil
    for i = first_run, last_run do
      local run = tonumber(ARGV[i])
      if run > 0 then
        s.req, s.ts, s.cs, s.cf = s.req + run, s.ts + run, s.cs + run, 0
        if q ~= nil then
          quorum_report(q, run_instance(i), false)
        end
      elseif run < 0 then
        if trip_function == nil then
          trip_function = assert(loadstring(ARGV[11], 'trip'))()
        end
        if q ~= nil then
          quorum_report(q, run_instance(i), true)
        end
        local tripped = false
        for _ = 1, -run do
          s.req, s.tf, s.cf, s.cs = s.req + 1, s.tf + 1, s.cf + 1, 0
          if trip_function(s.req, s.ts, s.tf, s.cs, s.cf) and (q == nil or quorum_met(q)) then
            tripped = true
            break
          end
        end
        if tripped then
          set_state(c, s, 'open', 'trip', run_instance(i))
          break
        end
      end
    end
  end
  -- open, or a probe's report after its half-open period ended: stale, dropped
end

save_state(c, s)
return c.out
