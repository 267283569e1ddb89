-- Per-tenant (and per-agent) budgets and rate limits, on the server's clock. Every key
-- carries the tenant's hash tag: one slot.
--
-- A *scope* is four keys: the tenant's own, and one more set per agent with limits.
--   spend (hash): d:<day> / m:<month> spent, rd:<day> / rm:<month> reserved, in nano-USD;
--     <day> is days since 1970-01-01 (UTC), <month> is YYYYMM; seeded:<day> once seeded
--   reservations (zset: call id -> lease expiry ms)
--   reservation amounts (hash: call id -> "nanos,tokens,day,month")
--   rates (hash): r:<minute> requests, t:<minute> tokens
-- KEYS: 4 per scope, scope by scope; settle adds the call's settle marker last (kept ten
-- minutes).
-- ARGV[1] op: reserve | settle | seed | read;  ARGV[2] now ms, or "" for the server's TIME
-- reserve: ARGV[3] call id, [4] estimate nanos, [5] estimated tokens, [6] lease ms,
--          [7] "1" when the caller can seed spend from the usage ledger, then per scope:
--          USD/day limit nanos, USD/month limit nanos, requests/min, tokens/min (-1: none)
--   -> { 1 } admitted in every scope, { 0, limit name, retry after ms, limit, used, scope }
--      refused, or { 2, scope, day start ms, month start ms } when that scope's spend
--      today was never seeded (Redis lost it, or a new day): the caller reads the ledger,
--      calls seed for the scope, and asks again
-- seed:    (one scope) ARGV[3] spend today nanos, [4] spend this month nanos (from the
--          ledger): each counter becomes the larger of itself and the ledger's figure
-- settle:  ARGV[3] call id, [4] real nanos, [5] real tokens
--   -> { 1 } settled, { 0 } already settled
-- read:    (one scope) -> { spent today, spent this month, reserved today, reserved this month }
local op = ARGV[1]
-- `now` (ms) comes from clock.lua, prepended.
local DAY, MINUTE = 86400000, 60000
local day = math.floor(now / DAY)

-- Howard Hinnant's civil_from_days / days_from_civil.
local function civil(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return y, m
end
local function days_from_civil(y, m)
  y = m <= 2 and y - 1 or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = math.floor((153 * mp + 2) / 5)
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
local year, mon = civil(day)
local month = year * 100 + mon
local function num(v) return tonumber(v or '0') or 0 end

-- The keys of scope `i` (1-based).
local function scope(i)
  local k = (i - 1) * 4
  return { spend = KEYS[k + 1], resv = KEYS[k + 2], amounts = KEYS[k + 3], rates = KEYS[k + 4] }
end

-- Reservations whose lease ran out come back (their replica died or never settled).
local function expire_leases(s)
  local stale = redis.call('ZRANGEBYSCORE', s.resv, '-inf', now)
  for _, id in ipairs(stale) do
    local amount = redis.call('HGET', s.amounts, id)
    if amount then
      local nanos, _, d, m = string.match(amount, '(%-?%d+),(%-?%d+),(%d+),(%d+)')
      redis.call('HINCRBY', s.spend, 'rd:' .. d, -tonumber(nanos))
      redis.call('HINCRBY', s.spend, 'rm:' .. m, -tonumber(nanos))
      redis.call('HDEL', s.amounts, id)
    end
    redis.call('ZREM', s.resv, id)
  end
end

if op == 'reserve' then
  local id, est, tokens, lease = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local can_seed = ARGV[7] == '1'
  local scopes = math.floor(#KEYS / 4)
  local minute = math.floor(now / MINUTE)
  local into = (now % MINUTE) / MINUTE
  -- Every scope is checked before any is changed: a refusal changes nothing.
  for i = 1, scopes do
    local s = scope(i)
    local a = 7 + (i - 1) * 4
    local day_limit, month_limit = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local rpm, tpm = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
    expire_leases(s)
    if can_seed and (day_limit >= 0 or month_limit >= 0)
        and redis.call('HEXISTS', s.spend, 'seeded:' .. day) == 0 then
      return { 2, i, day * DAY, days_from_civil(year, mon) * DAY }
    end
    if day_limit >= 0 or month_limit >= 0 then
      local f = redis.call('HMGET', s.spend, 'd:' .. day, 'rd:' .. day, 'm:' .. month, 'rm:' .. month)
      local used_day = num(f[1]) + num(f[2])
      local used_month = num(f[3]) + num(f[4])
      if day_limit >= 0 and used_day + est > day_limit then
        return { 0, 'usd_per_day', (day + 1) * DAY - now, day_limit, used_day, i }
      end
      if month_limit >= 0 and used_month + est > month_limit then
        local next_y, next_m = year, mon + 1
        if next_m == 13 then next_y, next_m = year + 1, 1 end
        return { 0, 'usd_per_month', days_from_civil(next_y, next_m) * DAY - now, month_limit,
          used_month, i }
      end
    end
    if rpm >= 0 or tpm >= 0 then
      local r = redis.call('HMGET', s.rates, 'r:' .. minute, 'r:' .. (minute - 1),
        't:' .. minute, 't:' .. (minute - 1))
      -- A sliding minute: the previous minute's count weighted by the part still inside it.
      local requests = num(r[1]) + num(r[2]) * (1 - into)
      local used_tokens = num(r[3]) + num(r[4]) * (1 - into)
      if rpm >= 0 and requests + 1 > rpm then
        return { 0, 'requests_per_minute', MINUTE - (now % MINUTE), rpm, math.floor(requests), i }
      end
      if tpm >= 0 and used_tokens + tokens > tpm then
        return { 0, 'tokens_per_minute', MINUTE - (now % MINUTE), tpm, math.floor(used_tokens), i }
      end
    end
  end
  local amount = est .. ',' .. tokens .. ',' .. day .. ',' .. month
  for i = 1, scopes do
    local s = scope(i)
    -- Asked twice for one call id (a retry after a lost reply): reserved once.
    if redis.call('HSETNX', s.amounts, id, amount) == 0 then return { 1 } end
    redis.call('HINCRBY', s.spend, 'rd:' .. day, est)
    redis.call('HINCRBY', s.spend, 'rm:' .. month, est)
    redis.call('ZADD', s.resv, now + lease, id)
    redis.call('HINCRBY', s.rates, 'r:' .. minute, 1)
    redis.call('HINCRBY', s.rates, 't:' .. minute, tokens)
    redis.call('PEXPIRE', s.rates, 3 * MINUTE)
    redis.call('PEXPIRE', s.spend, 40 * DAY)
    redis.call('PEXPIRE', s.resv, lease + MINUTE)
    redis.call('PEXPIRE', s.amounts, lease + MINUTE)
  end
  return { 1 }
elseif op == 'settle' then
  local id, real, real_tokens = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
  -- The marker only has to outlive a retry of this call (seconds): ten minutes keeps the
  -- number of markers to the requests of the last ten minutes.
  if redis.call('SET', KEYS[#KEYS], '1', 'NX', 'PX', 10 * MINUTE) == false then
    return { 0 }
  end
  local minute = math.floor(now / MINUTE)
  for i = 1, math.floor((#KEYS - 1) / 4) do
    local s = scope(i)
    local amount = redis.call('HGET', s.amounts, id)
    local spend_day, spend_month = day, month
    if amount then
      local nanos, tokens, d, m = string.match(amount, '(%-?%d+),(%-?%d+),(%d+),(%d+)')
      redis.call('HINCRBY', s.spend, 'rd:' .. d, -tonumber(nanos))
      redis.call('HINCRBY', s.spend, 'rm:' .. m, -tonumber(nanos))
      redis.call('HDEL', s.amounts, id)
      redis.call('ZREM', s.resv, id)
      spend_day, spend_month = d, m
      redis.call('HINCRBY', s.rates, 't:' .. minute, real_tokens - tonumber(tokens))
    end
    redis.call('HINCRBY', s.spend, 'd:' .. spend_day, real)
    redis.call('HINCRBY', s.spend, 'm:' .. spend_month, real)
    redis.call('PEXPIRE', s.spend, 40 * DAY)
  end
  return { 1 }
elseif op == 'seed' then
  local s = scope(1)
  local f = redis.call('HMGET', s.spend, 'd:' .. day, 'm:' .. month)
  redis.call('HSET', s.spend, 'd:' .. day, math.max(num(f[1]), tonumber(ARGV[3])),
    'm:' .. month, math.max(num(f[2]), tonumber(ARGV[4])), 'seeded:' .. day, '1')
  redis.call('HDEL', s.spend, 'seeded:' .. (day - 1))
  redis.call('PEXPIRE', s.spend, 40 * DAY)
  return { 1 }
else
  local s = scope(1)
  expire_leases(s)
  local f = redis.call('HMGET', s.spend, 'd:' .. day, 'm:' .. month, 'rd:' .. day, 'rm:' .. month)
  return { num(f[1]), num(f[2]), num(f[3]), num(f[4]) }
end
