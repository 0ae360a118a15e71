-- Sets, clears or resets an operator override on one breaker.
--
-- KEYS: 1 state hash, 2 leases hash, 3 partition events stream,
--       4 partition deadlines zset, 5 recent events list,
--       6 quorum failing zset, 7 quorum reporting set
-- ARGV: 1 now ms ('' = Redis TIME), 2 stream MAXLEN,
--       3 action: 'force_open' | 'force_closed' | 'disabled' | 'clear' | 'reset',
--       4 reason, 5 ttl ms ('' = until cleared), 6 set by, 7 event detail
-- Returns {'not_found'} or {'ok', events...} (events as breaker_apply.lua).

local c = {state = KEYS[1], leases = KEYS[2], events = KEYS[3], deadlines = KEYS[4],
           recent = KEYS[5], qfail = KEYS[6], qseen = KEYS[7], now = now_ms(ARGV[1]),
           maxlen = ARGV[2], out = {}}
local action, detail = ARGV[3], ARGV[7]
local s = load_state(c.state)
if s == nil then
  return {'not_found'}
end
s.updated = c.now
if action == 'clear' then
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
  local before, had = effective(s), s.ov
  s.ov, s.ov_reason, s.ov_by = action, ARGV[4], ARGV[6]
  if ARGV[5] ~= '' then
    s.ov_exp = c.now + tonumber(ARGV[5])
    redis.call('ZADD', c.deadlines, s.ov_exp, 'v|' .. s.id)
  else
    s.ov_exp = -1
    redis.call('ZREM', c.deadlines, 'v|' .. s.id)
  end
  if had ~= action then  -- agents hear of every change of the override itself
    emit(c, s, before, 'override', '', detail)
  end
end
save_state(c, s)
return {'ok', unpack(c.out)}
