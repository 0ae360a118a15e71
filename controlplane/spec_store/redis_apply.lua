-- Atomic multi-spec write for the Redis spec store (see docs/stores.md).
--
-- KEYS[1] store revision (string)      KEYS[2] last revision per spec (hash)
-- KEYS[3] live digest per spec (hash)   KEYS[4] live spec JSON per spec (hash)
-- KEYS[5] changes stream                KEYS[5 + i] history list of write i
--
-- ARGV[1] now (unix seconds, a JSON number)   ARGV[2] changes stream MAXLEN (approximate)
-- then 6 values per write i:
--   field        the spec's field name in the hashes ("<namespace>/<name>", escaped)
--   expected     expected live revision, "" when unconditional (0 = must not be live)
--   action       "apply" | "rollback" | "delete"
--   digest       content digest ("" for delete)
--   live_tail    the live JSON object after its leading "{", without revision/update_time
--   record_tail  the history record JSON after its leading "{", without revision/create_time
--
-- Revision numbers are only known here, so Python sends each JSON object minus
-- its opening brace and this script prepends the revision fields: documents are
-- never decoded by cjson (which would reformat numbers and turn {} into []).
--
-- Returns {"ok", store_revision, revision_1, changed_1, ...},
-- {"conflict", i, live_revision} or {"not_found", i}; nothing is written
-- unless the answer is "ok".

local now = ARGV[1]
local maxlen = ARGV[2]
local per_write = 6
local count = (#ARGV - 2) / per_write

local function arg(i, offset)
  return ARGV[2 + (i - 1) * per_write + offset]
end

local function live_revision(field)
  if redis.call('HEXISTS', KEYS[3], field) == 0 then
    return 0
  end
  return tonumber(redis.call('HGET', KEYS[2], field))
end

-- 1. Every precondition first: a failure leaves the store untouched.
for i = 1, count do
  local field, expected, action = arg(i, 1), arg(i, 2), arg(i, 3)
  local live = live_revision(field)
  if action == 'delete' and live == 0 then
    return {'not_found', i}
  end
  if expected ~= '' and tonumber(expected) ~= live then
    return {'conflict', i, live}
  end
end

-- 2. The writes.
local answer = {'ok', 0}
local changed_fields = {}
for i = 1, count do
  local field, action, digest = arg(i, 1), arg(i, 3), arg(i, 4)
  local live = live_revision(field)
  if action ~= 'delete' and live ~= 0 and redis.call('HGET', KEYS[3], field) == digest then
    table.insert(answer, live)
    table.insert(answer, 0)
  else
    local revision = redis.call('HINCRBY', KEYS[2], field, 1)
    redis.call('RPUSH', KEYS[5 + i],
      '{"revision":' .. revision .. ',"create_time":' .. now .. ',' .. arg(i, 6))
    if action == 'delete' then
      redis.call('HDEL', KEYS[3], field)
      redis.call('HDEL', KEYS[4], field)
    else
      redis.call('HSET', KEYS[3], field, digest)
      redis.call('HSET', KEYS[4], field,
        '{"revision":' .. revision .. ',"update_time":' .. now .. ',' .. arg(i, 5))
    end
    table.insert(changed_fields, field)
    table.insert(answer, revision)
    table.insert(answer, 1)
  end
end

if #changed_fields > 0 then
  local store_revision = redis.call('INCR', KEYS[1])
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', maxlen, '*',
    'revision', store_revision, 'specs', table.concat(changed_fields, ' '))
  answer[2] = store_revision
else
  answer[2] = tonumber(redis.call('GET', KEYS[1]) or '0')
end
return answer
