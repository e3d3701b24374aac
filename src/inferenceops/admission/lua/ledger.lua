-- The admission ledger on Redis: every operation is one atomic call of this one script.
--
-- Loaded and called by inferenceops/admission/redis_ledger.py, which documents the
-- semantics (shared with the memory ledger) and the key layout. Conventions here:
--
-- * Time is the server's TIME in integer microseconds (~1.8e15 today, exact in a Lua
--   double up to 2^53 ~ 9.0e15). Every amount, limit and total must stay below 2^53 too.
-- * Integers are formatted with int() before being handed to Redis, so that no
--   number ever reaches a command in exponent notation.
-- * A window (REQUESTS/TOKENS) is one HASH: field 'n' = the total, 'e' = when its oldest
--   slot leaves, and per slot that was admitted into, field <slot index> = "<amount> <newest
--   admission time>". A slot counts while now < newest + window. The oldest slot's index
--   is derived from 'e' (its newest admission is e - window), so trimming starts there
--   and never scans for it.
-- * A "lease log" (CONCURRENCY, BUDGET) is a ZSET (member -> expiry) plus a HASH (member ->
--   amount, and the sum of all amounts under the empty field ''); a lease is gone when
--   its expiry <= now. drop_upto() removes them.
-- * KEYS[1] is the request's ticket: its value starts with the admission time, which names
--   the request's slot in every window and makes the lease member "<request id>@<admission
--   time>" unique per admission (then, if it holds leases, its instance and lease counters).
--   Then every check's keys: windows one HASH; leases zset and hash, and for budgets the
--   spent STRING.
-- * ARGV[1] = op, ARGV[2] = request id, ARGV[3..6] = op arguments, ARGV[7] = the checks:
--   six space-separated values per check, kind (r/t/c/b), limit, amount, window_us,
--   hard (1/0), ttl_ms (-1 = none). One string rather than 6 arguments per check
--   because encoding arguments is most of the client's CPU per call. ARGV[8] (admit
--   with leases, read, totals) = "<instance id> <check_ms>": the caller's instance and
--   how often the registry of instances is walked (0 = on every call).
-- * Liveness (admission/instance.py): a lease also belongs to the instance that took it.
--   {tag}:i:<id> is an instance's heartbeat, {tag}:o:<id> its leased requests (ZSET
--   member -> lease expiry), {tag}:instances the registry of ids, {tag}:live the "walked
--   recently" flag. These keys (and, when freeing, the counters a ticket names) are
--   derived from the hash tag of KEYS[1], not passed in KEYS: they are only known here.
--   Same hash tag, same Cluster slot.

local BATCH = 200
local SLOTS = 60  -- slots per window: memory_ledger.SLOTS (a test checks they agree)
local CHUNK = 16  -- slot fields read per HMGET while trimming
local REAP = 100  -- leases of dead instances freed per call at most; the rest on the next calls
local DAY_MS = 86400000  -- the registry and lease sets outlive their last heartbeat by this much

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

-- Window slots -----------------------------------------------------------------------

-- Slot length in whole µs, rounded up so that SLOTS slots always cover the window.
local function slot_size(window)
  return math.max(1, math.ceil(window / SLOTS))
end

-- floor(t / size) exactly: a double quotient can round up to the next integer.
local function slot_of(t, size)
  local i = math.floor(t / size)
  if i * size > t then i = i - 1 end
  return i
end

local function parse(v)
  local sp = string.find(v, ' ', 1, true)
  return tonumber(string.sub(v, 1, sp - 1)), tonumber(string.sub(v, sp + 1))
end

local function slot_value(amount, last)
  return string.format('%d %d', amount, last)
end

-- Drop the slots that left the window (only called once the oldest has: e <= now) and
-- return the new total and 'e' (nil: no slot left, the key is gone). Slots lie within
-- SLOTS + 1 indexes of the oldest (every admission trims first), so the walk reads at
-- most that many fields; a counter idle for more than two windows is dropped unread.
local function trim(w, total, e, window, size, now)
  local o, c = slot_of(e - window, size), slot_of(now, size)
  if c - o <= 2 * SLOTS then
    local top = math.min(c, o + SLOTS)
    local gone = {}
    for i = o, top, CHUNK do
      local fields = {}
      for j = i, math.min(i + CHUNK - 1, top) do fields[#fields + 1] = int(j) end
      local values = redis.call('HMGET', w, unpack(fields))
      for x = 1, #fields do
        if values[x] then
          local amount, last = parse(values[x])
          if last + window > now then  -- the oldest slot still in the window
            if #gone > 0 then redis.call('HDEL', w, unpack(gone)) end
            redis.call('HSET', w, 'n', int(total), 'e', int(last + window))
            return total, last + window
          end
          gone[#gone + 1] = fields[x]
          total = total - amount
        end
      end
    end
  end
  redis.call('DEL', w)
  return 0, nil
end

-- The window after trimming: its total, 'e' (nil: no slots) and the value of slot `i`
-- (nil: absent, or no `i` given).
local function window_read(w, i, window, size, now)
  local got
  if i then got = redis.call('HMGET', w, 'n', 'e', i) else got = redis.call('HMGET', w, 'n', 'e') end
  local total, e, value = num(got[1]), tonumber(got[2]), got[3]
  if e and e <= now then
    total, e = trim(w, total, e, window, size, now)
    if not e then value = nil end
  end
  return total, e, value
end

-- Every slot in the window, oldest first: {amount1, last1, amount2, last2, ...}.
local function window_slots(w, window, size, now)
  local e = tonumber(redis.call('HGET', w, 'e'))
  if not e then return {} end
  local o = slot_of(e - window, size)
  local fields = {}
  for i = o, math.min(slot_of(now, size), o + SLOTS + 1) do fields[#fields + 1] = int(i) end
  local values = redis.call('HMGET', w, unpack(fields))
  local out = {}
  for x = 1, #fields do
    if values[x] then
      local amount, last = parse(values[x])
      out[#out + 1] = amount
      out[#out + 1] = last
    end
  end
  return out
end

-- A window is back to its initial state when its newest non-zero slot leaves.
local function window_reset(slots, window, now)
  for x = #slots - 1, 1, -2 do
    if slots[x] > 0 then return slots[x + 1] + window - now end
  end
  return 0
end

-- Walk the slots oldest first until `need` has been freed: when that slot leaves.
local function window_retry(slots, need, window, now)
  local freed = 0
  for x = 1, #slots, 2 do
    freed = freed + slots[x]
    if freed >= need then return slots[x + 1] + window - now end
  end
  return -1
end

-- Settle and release: add `delta` to slot `i` if it is still in the window.
local function window_adjust(w, i, delta, window, now)
  local got = redis.call('HMGET', w, 'n', i)
  if got[2] then
    local amount, last = parse(got[2])
    if last + window > now then
      redis.call('HSET', w, i, slot_value(amount + delta, last), 'n', int(num(got[1]) + delta))
    end
  end
end

-- Leases -------------------------------------------------------------------------------

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

-- Walk leases by ascending expiry until `need` has been freed; when that happens,
-- relative to now, is when the request would fit. -1: never.
local function time_to_free(z, h, need, now)
  local start, freed = 0, 0
  while true do
    local batch = redis.call('ZRANGE', z, start, start + BATCH - 1, 'WITHSCORES')
    if #batch == 0 then return -1 end
    local members = {}
    for i = 1, #batch, 2 do members[#members + 1] = batch[i] end
    local amounts = redis.call('HMGET', h, unpack(members))
    for i = 1, #members do
      freed = freed + num(amounts[i])
      if freed >= need then return tonumber(batch[2 * i]) - now end
    end
    start = start + BATCH
  end
end

local function latest_expiry_in(z, now)
  local last = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')
  if #last == 0 then return 0 end
  return tonumber(last[2]) - now
end

-- Liveness ----------------------------------------------------------------------------

local TAG = string.match(KEYS[1] or '', '^(%b{})')

-- Free up to `budget` leases of the dead instance `id`; returns how many requests it
-- looked at (fewer than `budget`: none are left). A request's ticket names the lease
-- counters it holds; a lease that is already gone (settled, expired, freed) frees nothing,
-- so nothing is ever freed twice. Reservations are dropped, not charged; the tickets stay,
-- so a late settle still charges what the request really cost.
local function reap(id, budget)
  local o = TAG .. ':o:' .. id
  local members = redis.call('ZRANGE', o, 0, budget - 1)
  for _, member in ipairs(members) do
    local rid, at = string.match(member, '^(.*)@(%d+)$')
    local ticket = rid and redis.call('GET', TAG .. ':q:' .. rid)
    if ticket and string.match(ticket, '^%d+') == at then
      for base in string.gmatch(ticket, '%z([^%z]+)') do
        remove(base .. ':z', base .. ':h', member)
      end
    end
  end
  if #members > 0 then redis.call('ZREM', o, unpack(members)) end
  return #members
end

-- At most once per check_ms (per prefix): every registered instance without a heartbeat
-- has its leases freed and leaves the registry; live ones have their expired (leaked)
-- entries trimmed. O(instances) plus at most REAP freed leases per call. `walked`: whether
-- the flag saying it ran less than check_ms ago is set (nil: not known yet).
local function check_liveness(check_ms, now, walked)
  local flag = TAG .. ':live'
  if check_ms > 0 then
    if walked == nil then walked = redis.call('EXISTS', flag) == 1 end
    if walked then return end
    redis.call('SET', flag, '1', 'PX', check_ms)
  end
  local registry = TAG .. ':instances'
  local budget = REAP
  for _, id in ipairs(redis.call('SMEMBERS', registry)) do
    if redis.call('EXISTS', TAG .. ':i:' .. id) == 1 then
      redis.call('ZREMRANGEBYSCORE', TAG .. ':o:' .. id, '-inf', int(now))
    else
      budget = budget - reap(id, budget)
      if budget <= 0 then  -- maybe more to free: let the next call go on at once
        if check_ms > 0 then redis.call('DEL', flag) end
        return
      end
      redis.call('SREM', registry, id)
    end
  end
end

local function instance_arg()
  local id, check_ms = string.match(ARGV[8] or '', '^(%S+) (%d+)$')
  return id, tonumber(check_ms)
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

-- Operations ---------------------------------------------------------------------------

-- State of one counter without reserving anything: {used, reset_us}.
local function state_of(kind, k, window, now)
  if kind == 'r' or kind == 't' then
    local w, size = KEYS[k], slot_size(window)
    local used = window_read(w, nil, window, size, now)
    return used, window_reset(window_slots(w, window, size, now), window, now)
  end
  local z, h = KEYS[k], KEYS[k + 1]
  drop_upto(z, h, now)
  if kind == 'c' then return sum_of(h), latest_expiry_in(z, now) end
  local s = KEYS[k + 2]
  return num(redis.call('GET', s)) + sum_of(h), budget_reset(s)
end

local function admit()
  if redis.call('EXISTS', KEYS[1]) == 1 then return {-1} end
  local rid, lease, ticket_ms, margin_ms = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
  local n = tonumber(ARGV[6])
  local id, check_ms = instance_arg()
  local now
  if id then
    -- Leases only for a live instance: one without its heartbeat key would have them freed
    -- by the next caller that looks. (One MGET also tells whether the registry was walked.)
    local got = redis.call('MGET', TAG .. ':i:' .. id, TAG .. ':live')
    if not got[1] then return {-2} end
    now = clock()
    check_liveness(check_ms, now, got[2] ~= false)
  else
    now = clock()
  end
  local before, oldest, current = {}, {}, {}
  local k, a = 2, 1
  for i = 1, n do
    local kind, limit, amount = C[a], tonumber(C[a + 1]), tonumber(C[a + 2])
    local window, hard = tonumber(C[a + 3]), C[a + 4]
    local used, reset, retry = 0, 0, -1
    local fits = true
    if kind == 'r' or kind == 't' then
      local w, size = KEYS[k], slot_size(window)
      used, oldest[i], current[i] = window_read(w, int(slot_of(now, size)), window, size, now)
      if used + amount > limit then
        fits = false
        local slots = window_slots(w, window, size, now)
        if amount <= limit then retry = window_retry(slots, used + amount - limit, window, now) end
        reset = window_reset(slots, window, now)
      end
      k = k + 1
    elseif kind == 'c' then
      local z, h = KEYS[k], KEYS[k + 1]
      drop_upto(z, h, now)
      used = sum_of(h)
      if used + amount > limit then
        fits = false
        if amount <= limit then retry = time_to_free(z, h, used + amount - limit, now) end
        reset = latest_expiry_in(z, now)
      end
      k = k + 2
    else
      local z, h = KEYS[k], KEYS[k + 1]
      drop_upto(z, h, now)
      local spent = num(redis.call('GET', KEYS[k + 2]))
      used = spent + sum_of(h)
      if hard == '1' and used + amount > limit then
        fits = false
        if spent + amount <= limit then retry = time_to_free(z, h, used + amount - limit, now) end
        reset = budget_reset(KEYS[k + 2])
      end
      before[n + i] = spent
      k = k + 3
    end
    if not fits then return {0, i, retry, used, reset} end
    before[i] = used
    a = a + 6
  end

  local member = rid .. '@' .. int(now)
  if id then
    -- "<time> <instance id>" and, after a NUL each (names may hold spaces, never a NUL), the
    -- lease counters' key bases, so that a reaper can free them.
    local ticket = {int(now) .. ' ' .. id}
    k, a = 2, 1
    for _ = 1, n do
      local kind = C[a]
      if kind == 'r' or kind == 't' then
        k = k + 1
      else
        ticket[#ticket + 1] = string.sub(KEYS[k], 1, -3)
        if kind == 'c' then k = k + 2 else k = k + 3 end
      end
      a = a + 6
    end
    redis.call('SET', KEYS[1], table.concat(ticket, '\0'), 'PX', ticket_ms)
    -- Its TTL comes with the instance's next heartbeat (beat()), not on every admission.
    redis.call('ZADD', TAG .. ':o:' .. id, int(now + lease), member)
  else
    redis.call('SET', KEYS[1], int(now), 'PX', ticket_ms)
  end
  local out, over = {1}, {}
  k, a = 2, 1
  for i = 1, n do
    local kind, limit, amount = C[a], tonumber(C[a + 1]), tonumber(C[a + 2])
    local window, hard, ttl = tonumber(C[a + 3]), C[a + 4], tonumber(C[a + 5])
    local reset
    if kind == 'r' or kind == 't' then
      local w, size = KEYS[k], slot_size(window)
      local slot = slot_of(now, size)
      local total = before[i] + amount
      local value = slot_value(amount, now)
      if current[i] then value = slot_value(parse(current[i]) + amount, now) end
      local e = oldest[i]
      if not e or slot_of(e - window, size) == slot then
        -- this slot is (or becomes) the oldest: it now leaves a window after this admission
        redis.call('HSET', w, int(slot), value, 'n', int(total), 'e', int(now + window))
      else
        redis.call('HSET', w, int(slot), value, 'n', int(total))
      end
      redis.call('PEXPIRE', w, int(math.ceil(window / 1000) + margin_ms))
      if amount > 0 then
        reset = window
      else
        reset = window_reset(window_slots(w, window, size, now), window, now)
      end
      k = k + 1
    else
      local z, h = KEYS[k], KEYS[k + 1]
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
  local ticket = redis.call('GET', KEYS[1])
  if not ticket then return 0 end
  redis.call('DEL', KEYS[1])
  local at, id = string.match(ticket, '^(%d+) ?([^%z]*)')
  local member = ARGV[2] .. '@' .. at
  if id ~= '' then redis.call('ZREM', TAG .. ':o:' .. id, member) end
  at = tonumber(at)
  local tokens, cost, n = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[6])
  local now = clock()
  local k, a = 2, 1
  for _ = 1, n do
    local kind, amount, window, ttl = C[a], tonumber(C[a + 2]), tonumber(C[a + 3]), tonumber(C[a + 5])
    if kind == 'r' or kind == 't' then
      local delta = 0
      if not settle then delta = -amount elseif kind == 't' then delta = tokens - amount end
      if delta ~= 0 then
        window_adjust(KEYS[k], int(slot_of(at, slot_size(window))), delta, window, now)
      end
      k = k + 1
    else
      local z, h = KEYS[k], KEYS[k + 1]
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
  local id, check_ms = instance_arg()
  if id then
    for a = 1, #C, 6 do
      if C[a] == 'c' or C[a] == 'b' then check_liveness(check_ms, now) break end
    end
  end
  local out = {}
  local k, a = 2, 1
  for _ = 1, n do
    local kind, window = C[a], tonumber(C[a + 3])
    local used, reset = state_of(kind, k, window, now)
    out[#out + 1] = used
    out[#out + 1] = reset
    if kind == 'b' then k = k + 3 elseif kind == 'c' then k = k + 2 else k = k + 1 end
    a = a + 6
  end
  return out
end

local function totals()
  local now = clock()
  local id, check_ms = instance_arg()
  if id then check_liveness(check_ms, now) end
  drop_upto(KEYS[2], KEYS[3], now)
  return {num(redis.call('GET', KEYS[4])), sum_of(KEYS[3])}
end

-- KEYS = {heartbeat, registry, the instance's lease set}, ARGV = {'beat', id, ttl_ms}: the
-- instance is live for ttl_ms. The registry and the lease set expire a day after the last
-- heartbeat: never while the instance beats; a dead instance's set is emptied (and so
-- deleted) by the walk within seconds, the day is only for when nobody walks any more.
local function beat()
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[3])
  redis.call('SADD', KEYS[2], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], DAY_MS)
  redis.call('PEXPIRE', KEYS[3], DAY_MS)
  return 1
end

local op = ARGV[1]
if op == 'admit' then return admit() end
if op == 'beat' then return beat() end
if op == 'settle' then return finish(true) end
if op == 'release' then return finish(false) end
if op == 'read' then return read() end
if op == 'totals' then return totals() end
return redis.error_reply('ledger.lua: unknown op ' .. tostring(op))
