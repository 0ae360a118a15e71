-- Applies one agent report for one breaker (an OutcomeBatch), atomically.
--
-- KEYS: 1 state hash, 2 leases hash, 3 partition events stream,
--       4 partition deadlines zset, 5 recent events list, 6 partition index set
-- ARGV: 1 now ms ('' = Redis TIME; tests only), 2 stream MAXLEN,
--       3 encoded breaker id, 4 policy name, 5 max_requests, 6 interval ms,
--       7 timeout ms, 8 interval seconds (text), 9 timeout seconds (text),
--       10 trip source, 11 trip compiled to Lua (trip_lua.py),
--       12 instance id, 13 lease id ('' = none), 14.. runs (+n successes, -n failures)
-- Returns the events produced, each
--   {stream id, breaker id, from, to, generation, cause, at ms, instance, detail, open_until}.

local c = {state = KEYS[1], leases = KEYS[2], events = KEYS[3], deadlines = KEYS[4],
           recent = KEYS[5], now = now_ms(ARGV[1]), maxlen = ARGV[2], out = {}}
local id, instance, lease = ARGV[3], ARGV[12], ARGV[13]
local interval, trip = tonumber(ARGV[6]), ARGV[10]

local s = load_state(c.state)
if s == nil then
  s = {id = id, state = 'closed', gen = 0, ov = '', ov_reason = '', ov_exp = -1, ov_by = '',
       interval = interval}
  new_window(s, c.now)
  redis.call('SADD', KEYS[6], id)
elseif s.trip ~= trip or s.interval ~= interval then
  -- Counts gathered under another trip or window mean nothing to the new one.
  s.interval = interval
  if s.state == 'closed' then
    new_window(s, c.now)
  end
end
s.name, s.max_requests, s.interval, s.timeout = ARGV[4], tonumber(ARGV[5]), interval,
  tonumber(ARGV[7])
s.interval_s, s.timeout_s, s.trip = ARGV[8], ARGV[9], trip
s.updated = c.now

if s.ov == '' then  -- an override freezes the machine: outcomes are dropped
  refresh(c, s)
  if s.state == 'half-open' then
    expire_leases(c, s)
    -- Only a live lease's probe counts, and a lease admits one outcome.
    if lease ~= '' and redis.call('HDEL', c.leases, lease) == 1 then
      for i = 14, #ARGV do
        local run = tonumber(ARGV[i])
        if run > 0 then
          s.ts, s.cs, s.cf = s.ts + 1, s.cs + 1, 0
          if s.cs >= max_requests(s) then
            set_state(c, s, 'closed', 'probe_success', instance)
          end
          break
        elseif run < 0 then
          set_state(c, s, 'open', 'probe_failure', instance)
          break
        end
      end
    end
  elseif s.state == 'closed' and lease == '' then
    -- Each outcome is before_request + after_request; open drops the rest.
    local trip_function = nil
    for i = 14, #ARGV do
      local run = tonumber(ARGV[i])
      if run > 0 then
        s.req, s.ts, s.cs, s.cf = s.req + run, s.ts + run, s.cs + run, 0
      elseif run < 0 then
        if trip_function == nil then
          trip_function = assert(loadstring(ARGV[11], 'trip'))()
        end
        local tripped = false
        for _ = 1, -run do
          s.req, s.tf, s.cf, s.cs = s.req + 1, s.tf + 1, s.cf + 1, 0
          if trip_function(s.req, s.ts, s.tf, s.cs, s.cf) then
            tripped = true
            break
          end
        end
        if tripped then
          set_state(c, s, 'open', 'trip', instance)
          break
        end
      end
    end
  end
  -- open, or a probe's report after its half-open period ended: stale, dropped
end

save_state(c, s)
return c.out
