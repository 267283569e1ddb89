-- The shared circuit breaker: one record per provider, changed only here, atomically,
-- on the server's clock. Every key carries the provider's hash tag: one slot.
--
-- KEYS[1] the record (hash)   KEYS[2] probe leases (zset: lease id -> expiry ms)
-- KEYS[3] recent transitions (list of "from,to,at_ms", newest first)
-- ARGV[1] op: acquire | record | force_open | force_close | reset | read
-- ARGV[2] now in ms, or "" for the server's clock (TIME)
-- ARGV[3..12] the config: window size, minimum calls, failure-rate threshold, consecutive
--   failures, open ms, max open ms, backoff multiplier, probes, successes to close,
--   configuration-fault hold ms
-- ARGV[13] jitter factor for a trip (1 +- jitter, drawn by the caller)
-- ARGV[14..] the op's own: acquire: lease id, lease ttl ms
--                          record: generation, probe (0/1), lease id, outcome (s|f|n|i),
--                                  error kind, retry-after ms
-- Returns { verdict (1 admitted, 0 rejected, -1 no verdict), state, generation,
--           open until ms, now ms, probe (0/1) } and, for read, the record's counters.
local record, leases, transitions = KEYS[1], KEYS[2], KEYS[3]
local op = ARGV[1]
-- `now` (ms) comes from clock.lua, prepended.
local window_size = tonumber(ARGV[3])
local minimum_calls = tonumber(ARGV[4])
local threshold = tonumber(ARGV[5])
local consecutive_limit = tonumber(ARGV[6])
local open_ms = tonumber(ARGV[7])
local max_open_ms = tonumber(ARGV[8])
local multiplier = tonumber(ARGV[9])
local max_probes = tonumber(ARGV[10])
local successes_to_close = tonumber(ARGV[11])
local fault_hold_ms = tonumber(ARGV[12])
local jitter = tonumber(ARGV[13])

local f = redis.call('HMGET', record, 'st', 'gen', 'win', 'cons', 'streak', 'trips',
  'opened', 'until', 'rnb', 'pok', 'kind', 'nop')
local r = {
  st = f[1] or 'closed', gen = tonumber(f[2] or '0'), win = f[3] or '',
  cons = tonumber(f[4] or '0'), streak = tonumber(f[5] or '0'), trips = tonumber(f[6] or '0'),
  opened = tonumber(f[7] or '-1'), untl = tonumber(f[8] or '0'), rnb = tonumber(f[9] or '0'),
  pok = tonumber(f[10] or '0'), kind = f[11] or '', nop = f[12] or '',
}
local dirty = false

local function set_state(to)
  if r.st ~= to then
    redis.call('LPUSH', transitions, r.st .. ',' .. to .. ',' .. now)
    redis.call('LTRIM', transitions, 0, 15)
  end
  if to == 'closed' then
    r.win = ''; r.cons = 0; r.streak = 0; r.rnb = 0; r.nop = ''
  elseif to == 'half_open' then
    r.pok = 0
  end
  if to ~= 'open' then r.untl = 0 end
  redis.call('DEL', leases)
  r.gen = r.gen + 1
  r.st = to
  dirty = true
end

local function trip(fault_kind)
  r.trips = r.trips + 1
  r.streak = r.streak + 1
  local period = open_ms
  if open_ms > 0 then period = open_ms * (multiplier ^ (r.streak - 1)) end
  if period ~= period or period > max_open_ms then period = max_open_ms end
  period = math.min(period * jitter, max_open_ms)
  if fault_kind then period = math.max(period, fault_hold_ms) end
  r.nop = fault_kind or ''
  local untl = now + math.floor(period + 0.5)
  if r.rnb > untl then untl = r.rnb end
  r.opened = now
  set_state('open')
  r.untl = untl
end

local function counts()
  local _, failures = string.gsub(r.win, 'f', '')
  return #r.win - failures, failures
end

local function rate_trips()
  local successes, failures = counts()
  return failures > 0 and successes + failures >= minimum_calls
    and failures / (successes + failures) >= threshold
end

local function push(c)
  r.win = r.win .. c
  if #r.win > window_size then r.win = string.sub(r.win, -window_size) end
  dirty = true
end

local function note_failure(kind, retry_ms)
  r.kind = kind
  if retry_ms > 0 and now + retry_ms > r.rnb then r.rnb = now + retry_ms end
  dirty = true
end

local verdict, probe = -1, 0
if op == 'acquire' then
  if r.st == 'closed' or r.st == 'forced_closed' then
    verdict = 1
  elseif r.st == 'forced_open' then
    verdict = 0
  else
    if r.st == 'open' then
      if now < r.untl then verdict = 0 else set_state('half_open') end
    end
    if verdict == -1 then
      redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
      if redis.call('ZCARD', leases) < max_probes then
        redis.call('ZADD', leases, now + tonumber(ARGV[15]), ARGV[14])
        redis.call('PEXPIRE', leases, tonumber(ARGV[15]) + 1000)
        verdict, probe = 1, 1
      else
        verdict = 0
      end
    end
  end
elseif op == 'record' then
  local gen, is_probe, lease, outcome = tonumber(ARGV[14]), ARGV[15] == '1', ARGV[16], ARGV[17]
  local kind, retry_ms = ARGV[18], tonumber(ARGV[19])
  if is_probe then redis.call('ZREM', leases, lease) end
  if gen == r.gen and outcome ~= 'i' then
    if is_probe and r.st == 'half_open' then
      if outcome == 's' then
        r.cons = 0; r.pok = r.pok + 1; dirty = true
        if r.pok >= successes_to_close then set_state('closed') end
      else
        note_failure(kind, retry_ms)
        r.cons = r.cons + 1
        trip(outcome == 'n' and kind or nil)
      end
    elseif not is_probe and r.st == 'closed' then
      if outcome == 's' then
        if r.cons ~= 0 then r.cons = 0; dirty = true end
        local successes = counts()
        if not (successes == #r.win and #r.win == window_size) then
          push('s')
          if rate_trips() then trip(nil) end
        end
      else
        note_failure(kind, retry_ms)
        r.cons = r.cons + 1
        push('f')
        if (consecutive_limit > 0 and r.cons >= consecutive_limit) or rate_trips() then
          trip(outcome == 'n' and kind or nil)
        end
      end
    end
  end
elseif op == 'force_open' then
  if r.st ~= 'forced_open' then set_state('forced_open') end
elseif op == 'force_close' then
  if r.st ~= 'forced_closed' then set_state('forced_closed') end
elseif op == 'reset' then
  set_state('closed')
  r.trips = 0; r.kind = ''; r.opened = -1
end

if dirty then
  redis.call('HSET', record, 'st', r.st, 'gen', r.gen, 'win', r.win, 'cons', r.cons,
    'streak', r.streak, 'trips', r.trips, 'opened', r.opened, 'until', r.untl, 'rnb', r.rnb,
    'pok', r.pok, 'kind', r.kind, 'nop', r.nop)
end

local reply = { verdict, r.st, r.gen, r.untl, now, probe }
if op == 'read' then
  local successes, failures = counts()
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
  table.insert(reply, successes)
  table.insert(reply, failures)
  table.insert(reply, r.cons)
  table.insert(reply, r.trips)
  table.insert(reply, r.kind)
  table.insert(reply, r.opened)
  table.insert(reply, r.nop)
  table.insert(reply, redis.call('ZCARD', leases))
  table.insert(reply, redis.call('LRANGE', transitions, 0, 15))
end
return reply
