-- Time-driven changes of one partition: pops its due deadlines and applies them.
--
-- KEYS: 1 partition deadlines zset, 2 partition events stream
-- ARGV: 1 now ms ('' = Redis TIME), 2 stream MAXLEN, 3 partition key prefix
--       ("fusebox:{bp<N>}:"), 4 at most this many deadlines per call
-- Deadline members: 'o|<id>' open timeout ends, 'v|<id>' override expires,
-- 'l|<id>' a lease expires. The breaker keys are built from the prefix: they
-- share the partition's hash tag, so they live in the same slot.
-- Returns the events produced (as breaker_apply.lua).

local now = now_ms(ARGV[1])
local prefix = ARGV[3]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. int(now), 'LIMIT', 0, ARGV[4])
local out = {}
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local kind, id = string.sub(member, 1, 1), string.sub(member, 3)
  local c = {state = prefix .. 'state:' .. id, leases = prefix .. 'leases:' .. id,
             events = KEYS[2], deadlines = KEYS[1], recent = prefix .. 'recent:' .. id,
             qfail = prefix .. 'qfail:' .. id, qseen = prefix .. 'qseen:' .. id,
             now = now, maxlen = ARGV[2], out = out}
  local s = load_state(c.state)
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
return out
