-- One partition's part of a target override: the override of every breaker of
-- a target (every method of an app, every actor id, both directions of a
-- component), existing and future.
--
-- KEYS: 1 partition target overrides hash, 2 partition index set,
--       3 partition events stream, 4 partition deadlines zset
-- ARGV: 1 now ms ('' = Redis TIME), 2 stream MAXLEN, 3 partition key prefix
--       ("fusebox:{bp<N>}:"), 4 encoded target (an encoded key without '/<method>'),
--       5 action: 'force_open' | 'force_closed' | 'disabled' | 'clear',
--       6 reason, 7 ttl ms ('' = until cleared), 8 set by, 9 event detail
-- Writes (or deletes) the partition's copy of the target override, which
-- breaker_apply.lua and 'adopt' read when they create a breaker, then sets (or
-- clears) the override of every breaker of the target in the partition, in
-- sorted order. The breaker keys are built from the prefix: they share the
-- partition's hash tag, so they live in the same slot.
-- Returns the events produced (as breaker_apply.lua).

local c = {events = KEYS[3], deadlines = KEYS[4], now = now_ms(ARGV[1]), maxlen = ARGV[2],
           out = {}}
local prefix, target, action = ARGV[3], ARGV[4], ARGV[5]
local reason, by, detail = ARGV[6], ARGV[8], ARGV[9]
local exp = -1
if action == 'clear' then
  redis.call('HDEL', KEYS[1], target)
  redis.call('ZREM', c.deadlines, 't|' .. target)
else
  if ARGV[7] ~= '' then
    exp = c.now + tonumber(ARGV[7])
    redis.call('ZADD', c.deadlines, exp, 't|' .. target)
  else
    redis.call('ZREM', c.deadlines, 't|' .. target)
  end
  redis.call('HSET', KEYS[1], target, cjson.encode(
    {ov = action, reason = reason, exp = int(exp), by = by, detail = detail}))
end

local head = target .. '/'
local ids = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if string.sub(id, 1, #head) == head then
    table.insert(ids, id)
  end
end
table.sort(ids)
for _, id in ipairs(ids) do
  local b = breaker_context(prefix, id, c)
  local s = load_state(b.state)
  if s ~= nil then
    s.updated = c.now
    if action == 'clear' then
      clear_override(b, s, detail)
    else
      set_override(b, s, action, reason, exp, by, detail)
    end
    save_state(b, s)
  end
end
return c.out
