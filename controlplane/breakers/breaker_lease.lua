-- Grants a half-open probe lease (gobreaker's half-open before_request).
--
-- KEYS: 1 state hash, 2 leases hash, 3 partition events stream,
--       4 partition deadlines zset, 5 recent events list,
--       6 quorum failing zset, 7 quorum reporting set (a closed window may roll over)
-- ARGV: 1 now ms ('' = Redis TIME), 2 stream MAXLEN, 3 new lease id, 4 ttl ms
-- Returns {granted 0|1, lease id, expires at ms, effective state, generation}.

local c = {state = KEYS[1], leases = KEYS[2], events = KEYS[3], deadlines = KEYS[4],
           recent = KEYS[5], qfail = KEYS[6], qseen = KEYS[7], now = now_ms(ARGV[1]),
           maxlen = ARGV[2], out = {}}
local s = load_state(c.state)
if s == nil then
  return {0, '', '0', 'closed', '0'}  -- nothing reported yet: closed, no lease needed
end
local granted, expires = 0, 0
if s.ov == '' then
  refresh(c, s)
  if s.state == 'half-open' then
    expire_leases(c, s)
    if s.req < max_requests(s) then
      s.req = s.req + 1
      granted, expires = 1, c.now + tonumber(ARGV[4])
      redis.call('HSET', c.leases, ARGV[3], int(expires))
      redis.call('ZADD', c.deadlines, 'LT', expires, 'l|' .. s.id)
    end
  end
  save_state(c, s)
end
if granted == 0 then
  return {0, '', '0', effective(s), int(s.gen)}
end
return {1, ARGV[3], int(expires), effective(s), int(s.gen)}
