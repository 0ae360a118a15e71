-- Sets, clears or resets an operator override on one breaker, or creates a
-- breaker under its target's override.
--
-- KEYS: 1 state hash, 2 leases hash, 3 partition events stream,
--       4 partition deadlines zset, 5 recent events list,
--       6 quorum failing zset, 7 quorum reporting set, 8 partition index set,
--       9 partition target overrides hash
-- ARGV: 1 now ms ('' = Redis TIME), 2 stream MAXLEN,
--       3 action: 'force_open' | 'force_closed' | 'disabled' | 'clear' | 'reset' | 'adopt',
--       4 reason, 5 ttl ms ('' = until cleared), 6 set by, 7 event detail,
--       8 encoded breaker id,
--       9 policy name ('' = no policy: a breaker without state is not created),
--       10 max_requests, 11 interval ms, 12 timeout ms, 13 interval seconds (text),
--       14 timeout seconds (text), 15 trip source,
--       16 quorum min instances ('' = no quorum), 17 quorum min share
-- A breaker without state is created (closed, zero counts, the policy given)
-- for an override set ahead of use (force_open, force_closed, disabled with a
-- policy), and for 'adopt' when a target override covers it (it then starts
-- with that override); 'adopt' does nothing to a breaker that has state.
-- Returns {'not_found'} (nothing done) or {'ok', events...} (events as breaker_apply.lua).

local c = {state = KEYS[1], leases = KEYS[2], events = KEYS[3], deadlines = KEYS[4],
           recent = KEYS[5], qfail = KEYS[6], qseen = KEYS[7], now = now_ms(ARGV[1]),
           maxlen = ARGV[2], out = {}}
local action, detail, id = ARGV[3], ARGV[7], ARGV[8]
local s = load_state(c.state)
local rule = nil
if s == nil then
  local setting = action ~= 'clear' and action ~= 'reset' and action ~= 'adopt'
  if action == 'adopt' then
    rule = target_rule(c, KEYS[9], id)
  end
  if ARGV[9] == '' or not (setting or rule ~= nil) then
    return {'not_found'}
  end
  local interval = tonumber(ARGV[11])
  s = create_state(c, id, interval, KEYS[8])
  assign_policy(s, ARGV[9], ARGV[10], interval, ARGV[12], ARGV[13], ARGV[14], ARGV[15],
                ARGV[16], ARGV[17])
elseif action == 'adopt' then
  return {'ok'}  -- it has state: agents get it as it is
end
s.updated = c.now
if action == 'adopt' then
  set_override(c, s, rule.ov, rule.reason, rule.exp, rule.by, rule.detail)
elseif action == 'clear' then
  clear_override(c, s, detail)
elseif action == 'reset' then
  local before = effective(s)
  s.ov, s.ov_reason, s.ov_exp, s.ov_by = '', '', -1, ''
  s.state = 'closed'
  new_window(c, s)
  redis.call('DEL', c.leases)
  redis.call('ZREM', c.deadlines, 'o|' .. s.id, 'v|' .. s.id, 'l|' .. s.id)
  emit(c, s, before, 'reset', '', detail)
else
  local exp = -1
  if ARGV[5] ~= '' then
    exp = c.now + tonumber(ARGV[5])
  end
  set_override(c, s, action, ARGV[4], exp, ARGV[6], detail)
end
save_state(c, s)
return {'ok', unpack(c.out)}
