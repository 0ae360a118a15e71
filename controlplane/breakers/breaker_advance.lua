-- Time-driven changes of one partition: pops its due deadlines and applies them.
--
-- KEYS: 1 partition deadlines zset, 2 partition events stream
-- ARGV: 1 now ms ('' = Redis TIME), 2 stream MAXLEN, 3 partition key prefix
--       ("fusebox:{bp<N>}:"), 4 at most this many deadlines per call
-- Deadline members: 'o|<id>' open timeout ends, 'v|<id>' override expires,
-- 'l|<id>' a lease expires, 't|<target>' a target override expires (forgotten
-- without an event: each breaker's own 'v|' expiry is its event). The breaker
-- keys are built from the prefix: they share the partition's hash tag, so they
-- live in the same slot.
-- Returns the events produced (as breaker_apply.lua).

local now = now_ms(ARGV[1])
local prefix = ARGV[3]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. int(now), 'LIMIT', 0, ARGV[4])
local partition = {events = KEYS[2], deadlines = KEYS[1], now = now, maxlen = ARGV[2], out = {}}
local targetov = prefix .. 'targetov'
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local kind, id = string.sub(member, 1, 1), string.sub(member, 3)
  local s = nil
  if kind == 't' then
    local raw = redis.call('HGET', targetov, id)
    if raw then
      local expires = tonumber(cjson.decode(raw).exp)
      if expires >= 0 and expires < now then
        redis.call('HDEL', targetov, id)
      end
    end
  else
    s = load_state(prefix .. 'state:' .. id)
  end
  local c = breaker_context(prefix, id, partition)
  if s ~= nil then
    if kind == 'v' then
      if s.ov ~= '' and s.ov_exp >= 0 and s.ov_exp < now then
        clear_override(c, s, 'override expired')
      end
    elseif kind == 'o' then
      if s.ov == '' then
        refresh(c, s)
      end
    else
      expire_leases(c, s)
    end
    save_state(c, s)
  end
end
return partition.out
