-- The admission ledger on Redis: every operation is one atomic call of this one script.
--
-- Loaded and called by inferenceops/admission/redis_ledger.py, which documents the
-- semantics (shared with the memory ledger) and the key layout. Conventions here:
--
-- * Time is the server's TIME in integer microseconds (~1.8e15 today, exact in a Lua
--   double up to 2^53 ~ 9.0e15). Every amount, limit and total must stay below 2^53 too.
-- * Integers are formatted with int() before being handed to Redis, so that no
--   number ever reaches a command in exponent notation.
-- * A "log" is a ZSET (member -> score) plus a HASH (member -> amount, and the sum
--   of all amounts under the empty field ''). Window counters score an entry by its
--   admission time (it leaves the window when score + window <= now); leases score
--   it by its expiry (it is gone when score <= now). drop_upto() removes both kinds.
-- * KEYS[1] is the request's ticket: its value is the admission time, which also
--   makes the log member "<request id>@<admission time>" unique per admission.
--   Then every check's keys: zset, hash, and for budgets the spent STRING.
-- * ARGV[1] = op, ARGV[2] = request id, ARGV[3..6] = op arguments, ARGV[7] = the checks:
--   six space-separated values per check, kind (r/t/c/b), limit, amount, window_us,
--   hard (1/0), ttl_ms (-1 = none). One string rather than 6 arguments per check
--   because encoding arguments is most of the client's CPU per call.

local BATCH = 200

local C = {}
for token in string.gmatch(ARGV[7] or '', '%S+') do C[#C + 1] = token end

local function int(n)
  return string.format('%d', n)
end

local function num(v)
  return tonumber(v) or 0
end

local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function sum_of(h)
  return num(redis.call('HGET', h, ''))
end

-- Remove every member scored <= cutoff, keeping the sum right.
local function drop_upto(z, h, cutoff)
  while true do
    local old = redis.call('ZRANGEBYSCORE', z, '-inf', int(cutoff), 'LIMIT', 0, BATCH)
    if #old == 0 then return end
    local amounts = redis.call('HMGET', h, unpack(old))
    local freed = 0
    for i = 1, #amounts do freed = freed + num(amounts[i]) end
    redis.call('ZREM', z, unpack(old))
    redis.call('HDEL', h, unpack(old))
    if freed ~= 0 then redis.call('HINCRBY', h, '', int(-freed)) end
    if #old < BATCH then return end
  end
end

-- Members are unique per admission (the ticket guarantees it), so nothing is overwritten.
local function add(z, h, member, score, amount)
  redis.call('ZADD', z, int(score), member)
  redis.call('HSET', h, member, int(amount))
  redis.call('HINCRBY', h, '', int(amount))
end

local function remove(z, h, member)
  local old = redis.call('HGET', h, member)
  if old then
    redis.call('ZREM', z, member)
    redis.call('HDEL', h, member)
    redis.call('HINCRBY', h, '', int(-tonumber(old)))
  end
end

-- Walk members by ascending score until `need` has been freed; the score at which that
-- happens plus `offset`, relative to now, is when the request would fit. -1: never.
local function time_to_free(z, h, need, offset, now)
  local start, freed = 0, 0
  while true do
    local batch = redis.call('ZRANGE', z, start, start + BATCH - 1, 'WITHSCORES')
    if #batch == 0 then return -1 end
    local members = {}
    for i = 1, #batch, 2 do members[#members + 1] = batch[i] end
    local amounts = redis.call('HMGET', h, unpack(members))
    for i = 1, #members do
      freed = freed + num(amounts[i])
      if freed >= need then return tonumber(batch[2 * i]) + offset - now end
    end
    start = start + BATCH
  end
end

-- Window counters are back to their initial state when the newest non-zero entry leaves.
local function window_reset(z, h, window, now)
  local start = 0
  while true do
    local batch = redis.call('ZREVRANGE', z, start, start + BATCH - 1, 'WITHSCORES')
    if #batch == 0 then return 0 end
    local members = {}
    for i = 1, #batch, 2 do members[#members + 1] = batch[i] end
    local amounts = redis.call('HMGET', h, unpack(members))
    for i = 1, #members do
      if num(amounts[i]) > 0 then return tonumber(batch[2 * i]) + window - now end
    end
    start = start + BATCH
  end
end

local function latest_expiry_in(z, now)
  local last = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')
  if #last == 0 then return 0 end
  return tonumber(last[2]) - now
end

-- A budget is reset when its spent key expires; -1 = never.
local function budget_reset(s)
  local ms = redis.call('PTTL', s)
  if ms == -2 then return 0 end
  if ms == -1 then return -1 end
  return ms * 1000
end


local function refresh_spent(s, spent, ttl)
  if ttl > 0 then
    redis.call('SET', s, int(spent), 'PX', int(ttl))
  else
    redis.call('SET', s, int(spent))
  end
end

-- State of one counter without reserving anything: {used, reset_us}.
local function state_of(kind, z, h, s, window, now)
  if kind == 'r' or kind == 't' then
    drop_upto(z, h, now - window)
    return sum_of(h), window_reset(z, h, window, now)
  end
  drop_upto(z, h, now)
  if kind == 'c' then return sum_of(h), latest_expiry_in(z, now) end
  return num(redis.call('GET', s)) + sum_of(h), budget_reset(s)
end

local function admit()
  if redis.call('EXISTS', KEYS[1]) == 1 then return {-1} end
  local rid, lease, ticket_ms, margin_ms = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
  local n = tonumber(ARGV[6])
  local now = clock()
  local before = {}
  local k, a = 2, 1
  for i = 1, n do
    local kind, limit, amount = C[a], tonumber(C[a + 1]), tonumber(C[a + 2])
    local window, hard = tonumber(C[a + 3]), C[a + 4]
    local z, h = KEYS[k], KEYS[k + 1]
    local used, reset, retry = 0, 0, -1
    local fits = true
    if kind == 'r' or kind == 't' then
      drop_upto(z, h, now - window)
      used = sum_of(h)
      if used + amount > limit then
        fits = false
        if amount <= limit then retry = time_to_free(z, h, used + amount - limit, window, now) end
        reset = window_reset(z, h, window, now)
      end
      k = k + 2
    elseif kind == 'c' then
      drop_upto(z, h, now)
      used = sum_of(h)
      if used + amount > limit then
        fits = false
        if amount <= limit then retry = time_to_free(z, h, used + amount - limit, 0, now) end
        reset = latest_expiry_in(z, now)
      end
      k = k + 2
    else
      drop_upto(z, h, now)
      local spent = num(redis.call('GET', KEYS[k + 2]))
      used = spent + sum_of(h)
      if hard == '1' and used + amount > limit then
        fits = false
        if spent + amount <= limit then retry = time_to_free(z, h, used + amount - limit, 0, now) end
        reset = budget_reset(KEYS[k + 2])
      end
      before[n + i] = spent
      k = k + 3
    end
    if not fits then return {0, i, retry, used, reset} end
    before[i] = used
    a = a + 6
  end

  redis.call('SET', KEYS[1], int(now), 'PX', ticket_ms)
  local member = rid .. '@' .. int(now)
  local out, over = {1}, {}
  k, a = 2, 1
  for i = 1, n do
    local kind, limit, amount = C[a], tonumber(C[a + 1]), tonumber(C[a + 2])
    local window, hard, ttl = tonumber(C[a + 3]), C[a + 4], tonumber(C[a + 5])
    local z, h = KEYS[k], KEYS[k + 1]
    local reset
    if kind == 'r' or kind == 't' then
      add(z, h, member, now, amount)
      local ms = math.ceil(window / 1000) + margin_ms
      redis.call('PEXPIRE', z, int(ms))
      redis.call('PEXPIRE', h, int(ms))
      if amount > 0 then reset = window else reset = window_reset(z, h, window, now) end
      k = k + 2
    else
      add(z, h, member, now + lease, amount)
      -- Outlive the latest lease (maybe an older, longer one), never just this one.
      local latest = latest_expiry_in(z, now)
      local ms = math.ceil(latest / 1000) + margin_ms
      redis.call('PEXPIRE', z, int(ms))
      redis.call('PEXPIRE', h, int(ms))
      if kind == 'c' then
        reset = latest
        k = k + 2
      else
        refresh_spent(KEYS[k + 2], before[n + i], ttl)
        if ttl > 0 then reset = ttl * 1000 else reset = -1 end
        if hard ~= '1' and before[i] + amount > limit then over[#over + 1] = i end
        k = k + 3
      end
    end
    out[#out + 1] = before[i] + amount
    out[#out + 1] = reset
    a = a + 6
  end
  for i = 1, #over do out[#out + 1] = over[i] end
  return out
end

-- settle and release: the first one for a ticket acts, later ones find no ticket.
local function finish(settle)
  local at = redis.call('GET', KEYS[1])
  if not at then return 0 end
  redis.call('DEL', KEYS[1])
  local member = ARGV[2] .. '@' .. at
  local tokens, cost, n = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[6])
  local now = clock()
  local k, a = 2, 1
  for _ = 1, n do
    local kind, window, ttl = C[a], tonumber(C[a + 3]), tonumber(C[a + 5])
    local z, h = KEYS[k], KEYS[k + 1]
    if kind == 'r' or kind == 't' then
      drop_upto(z, h, now - window)
      if not settle then
        remove(z, h, member)
      elseif kind == 't' then
        local old = redis.call('HGET', h, member)
        if old then
          redis.call('HSET', h, member, int(tokens))
          redis.call('HINCRBY', h, '', int(tokens - tonumber(old)))
        end
      end
      k = k + 2
    else
      drop_upto(z, h, now)
      remove(z, h, member)
      if kind == 'b' then
        if settle then
          local s = KEYS[k + 2]
          refresh_spent(s, num(redis.call('GET', s)) + cost, ttl)
        end
        k = k + 3
      else
        k = k + 2
      end
    end
    a = a + 6
  end
  return 1
end

local function read()
  local n = tonumber(ARGV[6])
  local now = clock()
  local out = {}
  local k, a = 2, 1
  for _ = 1, n do
    local kind, window = C[a], tonumber(C[a + 3])
    local used, reset = state_of(kind, KEYS[k], KEYS[k + 1], KEYS[k + 2], window, now)
    out[#out + 1] = used
    out[#out + 1] = reset
    if kind == 'b' then k = k + 3 else k = k + 2 end
    a = a + 6
  end
  return out
end

local function totals()
  drop_upto(KEYS[2], KEYS[3], clock())
  return {num(redis.call('GET', KEYS[4])), sum_of(KEYS[3])}
end

local op = ARGV[1]
if op == 'admit' then return admit() end
if op == 'settle' then return finish(true) end
if op == 'release' then return finish(false) end
if op == 'read' then return read() end
if op == 'totals' then return totals() end
return redis.error_reply('ledger.lua: unknown op ' .. tostring(op))
