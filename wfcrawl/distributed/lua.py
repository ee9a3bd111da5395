"""The Lua scripts of the distributed crawl: each runs atomically inside Redis.

Why Lua: a page's children must enter the queue *together with* the release of
the page's lease (or not at all), and taking a request must lease it in the same
step. Redis runs a script to the end even if the client that sent it dies.

Queue members are ``<15-digit sequence>:<score>``: equal scores pop in member
order (the sequence counts down for LIFO, Scrapy's default order, up for FIFO),
and a lease that expires can be put back with its priority. A requeued request gets a new member, so a late release or renewal by
the instance that lost the lease cannot touch the new lease.

Time is Redis's clock (``TIME``), never the instances' clocks.
"""

from __future__ import annotations

_HELPERS = r"""
local function chunked(cmd, key, args, step)
  local total = 0
  for i = 1, #args, step do
    local r = redis.call(cmd, key, unpack(args, i, math.min(i + step - 1, #args)))
    if type(r) == 'number' then total = total + r end
  end
  return total
end

local function collect(cmd, key, args, step)
  local out = {}
  for i = 1, #args, step do
    local r = redis.call(cmd, key, unpack(args, i, math.min(i + step - 1, #args)))
    -- HMGET/ZMSCORE give false (not nil) for a missing entry: ipairs sees them all
    for _, v in ipairs(r) do out[#out + 1] = v end
  end
  return out
end

local function members_of(args, n, i)
  local out = {}
  for j = 1, n do out[j] = args[i + j - 1] end
  return out, i + n
end
"""

#: KEYS: queue, data, leases, owners, seq, seen, epoch.
#: ARGV: token, candidate token, instance, ttl_ms, want, mode (set|bloom), key_ttl,
#: touch (0|1), order (lifo|fifo), flags (1: reap expired leases, 2: list this instance's
#: leases), n_push, n_push x (score, nf, nf filter args, payload), n_release, members,
#: n_renew, members, n_return, members.
#: Returns {'lost', current epoch} or {'ok', token, queued, leased, pushed,
#: duplicates, released, requeued, returned, {lost renewals}, {member, payload, ...},
#: {this instance's leases before step 6, when asked}}; leased is -1 (not counted,
#: to save a command) while the queue is not empty.
SYNC = _HELPERS + r"""
local queue, data, leases, owners, seq, seen, epoch = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[4])
local instance, want, mode = ARGV[3], tonumber(ARGV[5]), ARGV[6]
local lifo = ARGV[9] == 'lifo'

-- Equal scores pop in member order: a rising sequence is FIFO, a falling one LIFO.
local function member(n, score)
  if lifo then n = 999999999999999 - n end
  return string.format('%015d', n) .. ':' .. score
end

-- The epoch says the state is the one this instance has been working with: a
-- Redis that came back empty (no persistence) must fail the crawl, not restart it.
local current = redis.call('GET', epoch)
local token = ARGV[1]
if token == '' then
  if not current then
    redis.call('SET', epoch, ARGV[2])
    current = ARGV[2]
  end
  token = current
elseif current ~= token then
  return {'lost', current or ''}
end

local function requeue(members)
  if #members == 0 then return 0 end
  local payloads = collect('HMGET', data, members, 1000)
  local base = redis.call('INCRBY', seq, #members) - #members
  local z, h, n = {}, {}, 0
  for i, m in ipairs(members) do
    local p = payloads[i]
    if p then
      local score = string.match(m, ':(.*)$')
      local fresh = member(base + i, score)
      z[#z + 1] = score; z[#z + 1] = fresh
      h[#h + 1] = fresh; h[#h + 1] = p
      n = n + 1
    end
  end
  chunked('HDEL', data, members, 1000)
  chunked('ZREM', leases, members, 1000)
  chunked('HDEL', owners, members, 1000)
  if n > 0 then
    chunked('ZADD', queue, z, 1000)
    chunked('HSET', data, h, 1000)
  end
  return n
end

-- 1. pushes: new requests enter the queue; the dupefilter decides atomically
local i = 12
local n_push = tonumber(ARGV[11])
local pushed, duplicates = 0, 0
if n_push > 0 then
  local entries, checks = {}, {}
  for j = 1, n_push do
    local e = {score = ARGV[i], nf = tonumber(ARGV[i + 1]), first = i + 2}
    i = i + 2 + e.nf
    e.payload = ARGV[i]
    i = i + 1
    entries[j] = e
  end
  local batch = {}
  local fresh = {}
  if mode == 'set' then
    for _, e in ipairs(entries) do if e.nf > 0 then checks[#checks + 1] = ARGV[e.first] end end
    local present = collect('SMISMEMBER', seen, checks, 1000)
    local adds, c = {}, 0
    for _, e in ipairs(entries) do
      local new = true
      if e.nf > 0 then
        c = c + 1
        local fp = ARGV[e.first]
        new = present[c] == 0 and not batch[fp]
        if new then batch[fp] = true; adds[#adds + 1] = fp end
      end
      if new then fresh[#fresh + 1] = e else duplicates = duplicates + 1 end
    end
    chunked('SADD', seen, adds, 1000)
  else
    local ops = {}
    for _, e in ipairs(entries) do
      for b = 0, e.nf - 1 do ops[#ops + 1] = 'GET'; ops[#ops + 1] = 'u1'; ops[#ops + 1] = ARGV[e.first + b] end
    end
    local bits = collect('BITFIELD', seen, ops, 999)
    local sets, c = {}, 0
    for _, e in ipairs(entries) do
      local new = e.nf == 0
      local key = ''
      for b = 0, e.nf - 1 do
        c = c + 1
        if bits[c] == 0 then new = true end
        key = key .. ARGV[e.first + b] .. ','
      end
      if e.nf > 0 and batch[key] then new = false end
      if new then
        if e.nf > 0 then
          batch[key] = true
          for b = 0, e.nf - 1 do
            sets[#sets + 1] = 'SET'; sets[#sets + 1] = 'u1'; sets[#sets + 1] = ARGV[e.first + b]; sets[#sets + 1] = 1
          end
        end
        fresh[#fresh + 1] = e
      else
        duplicates = duplicates + 1
      end
    end
    chunked('BITFIELD', seen, sets, 1000)
  end
  if #fresh > 0 then
    local base = redis.call('INCRBY', seq, #fresh) - #fresh
    local z, h = {}, {}
    for j, e in ipairs(fresh) do
      local m = member(base + j, e.score)
      z[#z + 1] = e.score; z[#z + 1] = m
      h[#h + 1] = m; h[#h + 1] = e.payload
    end
    chunked('ZADD', queue, z, 1000)
    chunked('HSET', data, h, 1000)
    pushed = #fresh
  end
end

-- 2. releases: done requests leave for good (a lease lost meanwhile: no-op)
local n = tonumber(ARGV[i]); i = i + 1
local released = 0
local rel
rel, i = members_of(ARGV, n, i)
if n > 0 then
  released = chunked('ZREM', leases, rel, 1000)
  chunked('HDEL', data, rel, 1000)
  chunked('HDEL', owners, rel, 1000)
end

-- 3. renewals; a lease that is gone was taken back (expired): report it
n = tonumber(ARGV[i]); i = i + 1
local ren
ren, i = members_of(ARGV, n, i)
local lost = {}
if n > 0 then
  local scores = collect('ZMSCORE', leases, ren, 1000)
  local z = {}
  for j, m in ipairs(ren) do
    if scores[j] then z[#z + 1] = deadline; z[#z + 1] = m else lost[#lost + 1] = m end
  end
  chunked('ZADD', leases, z, 1000)
end

-- 4. returns: leased but never started (an instance closing): back to the queue now
n = tonumber(ARGV[i]); i = i + 1
local ret
ret, i = members_of(ARGV, n, i)
local returned = 0
if n > 0 then
  local scores = collect('ZMSCORE', leases, ret, 1000)
  local mine = {}
  for j, m in ipairs(ret) do if scores[j] then mine[#mine + 1] = m end end
  returned = requeue(mine)
end

-- 5. leases of dead instances (deadline passed) go back to the queue (when the
-- caller asks: a busy instance looks about once a second, not at every call)
local requeued = 0
local flags = tonumber(ARGV[10])
if flags % 2 == 1 then
  requeued = requeue(redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 500))
end

-- 5b. after a call whose reply never came: which leases are this instance's?
local mine = {}
if math.floor(flags / 2) % 2 == 1 then
  local all = redis.call('HGETALL', owners)
  for j = 1, #all, 2 do
    if all[j + 1] == instance then mine[#mine + 1] = all[j] end
  end
end

-- 6. lease up to `want` requests to this instance
local got = {}
if want > 0 then
  local popped = redis.call('ZPOPMIN', queue, want)
  local ms = {}
  for j = 1, #popped, 2 do ms[#ms + 1] = popped[j] end
  if #ms > 0 then
    local payloads = collect('HMGET', data, ms, 1000)
    local z, o = {}, {}
    for j, m in ipairs(ms) do
      if payloads[j] then
        z[#z + 1] = deadline; z[#z + 1] = m
        o[#o + 1] = m; o[#o + 1] = instance
        got[#got + 1] = m; got[#got + 1] = payloads[j]
      end
    end
    chunked('ZADD', leases, z, 1000)
    chunked('HSET', owners, o, 1000)
  end
end

local ttl = tonumber(ARGV[7])
if ARGV[8] == '1' and ttl > 0 then
  for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ttl) end
end

local queued = redis.call('ZCARD', queue)
local leased = -1
if queued == 0 then leased = redis.call('ZCARD', leases) end
return {'ok', token, queued, leased, pushed, duplicates, released, requeued, returned, lost, got, mine}
"""

#: KEYS: the rate key of one download slot. ARGV: delay in microseconds.
#: Reserves the next send time of the slot for the caller; returns microseconds to wait.
RESERVE = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local delay = tonumber(ARGV[1])
local at = tonumber(redis.call('GET', KEYS[1]) or '0')
if at < now then at = now end
local after = at + delay
-- %.0f: tostring() would write 1.7e+15
redis.call('SET', KEYS[1], string.format('%.0f', after), 'PX', math.floor((after - now) / 1000) + 60000)
return math.floor(at - now)
"""
