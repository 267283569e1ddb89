-- Per-tenant budgets and rate limits, on the server's clock. Every key carries the
-- tenant's hash tag: one slot.
--
-- KEYS[1] spend (hash): d:<day> / m:<month> spent, rd:<day> / rm:<month> reserved, in
--         nano-USD; <day> is days since 1970-01-01 (UTC), <month> is YYYYMM
-- KEYS[2] reservations (zset: call id -> lease expiry ms)
-- KEYS[3] reservation amounts (hash: call id -> "nanos,tokens,day,month")
-- KEYS[4] rates (hash): r:<minute> requests, t:<minute> tokens
-- KEYS[5] the settle marker of this call id (settle only; kept ten minutes)
-- ARGV[1] op: reserve | settle | read;  ARGV[2] now ms, or "" for the server's TIME
-- reserve: ARGV[3] call id, [4] estimate nanos, [5] estimated tokens, [6] lease ms,
--          [7] USD/day limit nanos, [8] USD/month limit nanos, [9] requests/min,
--          [10] tokens/min (each -1 for none), [11] "1" when the caller can seed the
--          spend from the usage ledger
--   -> { 1 } admitted, { 0, limit name, retry after ms, limit, used } refused, or
--      { 2, day start ms, month start ms } when the day's spend was never seeded (Redis
--      lost it, or a new day): the caller reads the ledger, calls seed, and asks again
-- seed:    ARGV[3] spend today nanos, [4] spend this month nanos (from the ledger): each
--          counter becomes the larger of itself and the ledger's figure
--   -> { 1 }
-- settle:  ARGV[3] call id, [4] real nanos, [5] real tokens
--   -> { 1 } settled, { 0 } already settled
-- read:    -> { spent today, spent this month, reserved today, reserved this month }
local spend, resv, amounts, rates = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
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

-- Reservations whose lease ran out come back (their replica died or never settled).
local function expire_leases()
  local stale = redis.call('ZRANGEBYSCORE', resv, '-inf', now)
  for _, id in ipairs(stale) do
    local amount = redis.call('HGET', amounts, id)
    if amount then
      local nanos, _, d, m = string.match(amount, '(%-?%d+),(%-?%d+),(%d+),(%d+)')
      redis.call('HINCRBY', spend, 'rd:' .. d, -tonumber(nanos))
      redis.call('HINCRBY', spend, 'rm:' .. m, -tonumber(nanos))
      redis.call('HDEL', amounts, id)
    end
    redis.call('ZREM', resv, id)
  end
end

if op == 'reserve' then
  expire_leases()
  local id, est, tokens, lease = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local day_limit, month_limit = tonumber(ARGV[7]), tonumber(ARGV[8])
  local rpm, tpm = tonumber(ARGV[9]), tonumber(ARGV[10])
  if ARGV[11] == '1' and (day_limit >= 0 or month_limit >= 0)
      and redis.call('HEXISTS', spend, 'seeded:' .. day) == 0 then
    return { 2, day * DAY, days_from_civil(year, mon) * DAY }
  end
  local fields = redis.call('HMGET', spend, 'd:' .. day, 'rd:' .. day, 'm:' .. month, 'rm:' .. month)
  local used_day = num(fields[1]) + num(fields[2])
  local used_month = num(fields[3]) + num(fields[4])
  if day_limit >= 0 and used_day + est > day_limit then
    return { 0, 'usd_per_day', (day + 1) * DAY - now, day_limit, used_day }
  end
  if month_limit >= 0 and used_month + est > month_limit then
    local next_y, next_m = year, mon + 1
    if next_m == 13 then next_y, next_m = year + 1, 1 end
    return { 0, 'usd_per_month', days_from_civil(next_y, next_m) * DAY - now, month_limit, used_month }
  end
  local minute = math.floor(now / MINUTE)
  local into = (now % MINUTE) / MINUTE
  local r = redis.call('HMGET', rates, 'r:' .. minute, 'r:' .. (minute - 1), 't:' .. minute, 't:' .. (minute - 1))
  -- A sliding minute: the previous minute's count weighted by the part still inside it.
  local requests = num(r[1]) + num(r[2]) * (1 - into)
  local used_tokens = num(r[3]) + num(r[4]) * (1 - into)
  if rpm >= 0 and requests + 1 > rpm then
    return { 0, 'requests_per_minute', MINUTE - (now % MINUTE), rpm, math.floor(requests) }
  end
  if tpm >= 0 and used_tokens + tokens > tpm then
    return { 0, 'tokens_per_minute', MINUTE - (now % MINUTE), tpm, math.floor(used_tokens) }
  end
  -- Asked twice for one call id (a retry after a lost reply): reserved once.
  if redis.call('HSETNX', amounts, id, est .. ',' .. tokens .. ',' .. day .. ',' .. month) == 0 then
    return { 1 }
  end
  redis.call('HINCRBY', spend, 'rd:' .. day, est)
  redis.call('HINCRBY', spend, 'rm:' .. month, est)
  redis.call('ZADD', resv, now + lease, id)
  redis.call('HINCRBY', rates, 'r:' .. minute, 1)
  redis.call('HINCRBY', rates, 't:' .. minute, tokens)
  redis.call('PEXPIRE', rates, 3 * MINUTE)
  redis.call('PEXPIRE', spend, 40 * DAY)
  redis.call('PEXPIRE', resv, lease + MINUTE)
  redis.call('PEXPIRE', amounts, lease + MINUTE)
  return { 1 }
elseif op == 'settle' then
  local id, real, real_tokens = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
  -- The marker only has to outlive a retry of this call (seconds): ten minutes keeps the
  -- number of markers to the requests of the last ten minutes.
  if redis.call('SET', KEYS[5], '1', 'NX', 'PX', 10 * MINUTE) == false then
    return { 0 }
  end
  local amount = redis.call('HGET', amounts, id)
  local spend_day, spend_month = day, month
  if amount then
    local nanos, tokens, d, m = string.match(amount, '(%-?%d+),(%-?%d+),(%d+),(%d+)')
    redis.call('HINCRBY', spend, 'rd:' .. d, -tonumber(nanos))
    redis.call('HINCRBY', spend, 'rm:' .. m, -tonumber(nanos))
    redis.call('HDEL', amounts, id)
    redis.call('ZREM', resv, id)
    spend_day, spend_month = d, m
    local minute = math.floor(now / MINUTE)
    redis.call('HINCRBY', rates, 't:' .. minute, real_tokens - tonumber(tokens))
  end
  redis.call('HINCRBY', spend, 'd:' .. spend_day, real)
  redis.call('HINCRBY', spend, 'm:' .. spend_month, real)
  redis.call('PEXPIRE', spend, 40 * DAY)
  return { 1 }
elseif op == 'seed' then
  local f = redis.call('HMGET', spend, 'd:' .. day, 'm:' .. month)
  redis.call('HSET', spend, 'd:' .. day, math.max(num(f[1]), tonumber(ARGV[3])),
    'm:' .. month, math.max(num(f[2]), tonumber(ARGV[4])), 'seeded:' .. day, '1')
  redis.call('HDEL', spend, 'seeded:' .. (day - 1))
  redis.call('PEXPIRE', spend, 40 * DAY)
  return { 1 }
else
  expire_leases()
  local f = redis.call('HMGET', spend, 'd:' .. day, 'm:' .. month, 'rd:' .. day, 'rm:' .. month)
  return { num(f[1]), num(f[2]), num(f[3]), num(f[4]) }
end
