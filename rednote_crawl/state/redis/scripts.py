"""The Lua scripts a worker runs in Redis: each is atomic, so a worker killed mid-way leaves all or
nothing, and each is one round trip however much it does.

Every script that reads or writes the crawl first checks that ``crawl`` still holds the id this
worker joined (``GUARD``): when Redis lost the crawl or ``scrapy redis reset`` ran under the
workers, it writes nothing and answers ``LOST`` or ``RESET`` (shared.py stops the worker).
Its key is the last of ``KEYS`` and the id the first of ``ARGV``. Times come from Redis's clock,
the one clock every worker shares.

Every script starts with ``#!lua`` (Redis 7 script flags, none given): Redis then refuses a script
that may write as a whole, before running any of it, when it refuses writes (OOM, NOREPLICAS,
MISCONF, READONLY); without the flags a script ran until its first refused write and kept what it
had written before it (an expired lease taken out of ``leases`` and never put back in ``requests``).

Every script that writes is idempotent (``once``): a worker that sends it again (its answer was
late past the client's timeout, a batch re-sent after an error reply) gets the first run's answer
and changes nothing. The caller names the operation (a uuid kept until an answer comes); the
answer is kept under ``applied:<id>`` for ``APPLIED_SECONDS``. Counters are also keyed by what they
count: a page is counted when its lease is acked, an ack when it removes a request.
"""

from __future__ import annotations

import hashlib

LOST_ANSWERS = ("LOST", "RESET")
FORMAT = "2:"  # a crawl id's prefix: requests are calls (kind, parameters), fingerprints follow the call
SHEBANG = "#!lua\n"
APPLIED_SECONDS = 600  # how long a write's answer is kept for a worker that sends it again

GUARD = """
local crawl = redis.call('GET', KEYS[#KEYS])
if crawl ~= ARGV[1] then if crawl then return 'RESET' end return 'LOST' end
"""
NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# Seen notes: ``seen_notes:XXX`` is a hash whose fields are strings of 10-byte records (the first
# 20 hex digits of an id; XXX its last 3): about 10 bytes per note, exact. An id's field is named
# by the digit before XXX; a field that reaches SPLIT records is split in 16, by the next digit to
# the left ("a" -> "a0".."af"), and keeps '' to say so. No string grows past SPLIT records, so an
# add reads and writes at most 2.5 KB however many notes are seen (one level deeper each time the
# notes grow sixteenfold: two levels at 100 million). Ids of another form go to the plain set
# ``seen_notes:other`` (record ''). A bucket of the earliest layout (one string of 11-byte records)
# is converted on its first add.
SEEN_ADD = """
local SPLIT = 256
local function seen_add(bucket, record, field, id)
  if record == '' then return redis.call('SADD', bucket, id) end
  if redis.call('TYPE', bucket).ok == 'string' then
    local old = redis.call('GET', bucket)
    local fields = {}
    for at = 1, #old - 10, 11 do
      local f = string.format('%x', math.floor(string.byte(old, at + 10) / 16))
      fields[f] = (fields[f] or '') .. string.sub(old, at, at + 9)
    end
    redis.call('DEL', bucket)
    for f, records in pairs(fields) do redis.call('HSET', bucket, f, records) end
  end
  local level, seen = 1, redis.call('HGET', bucket, field)
  while seen == '' do
    level = level + 1
    field = field .. string.sub(id, 22 - level, 22 - level)
    seen = redis.call('HGET', bucket, field)
  end
  if seen then
    local from = 1
    while true do
      local at = string.find(seen, record, from, true)
      if not at then break end
      if (at - 1) % 10 == 0 then return 0 end
      from = at + 1
    end
  end
  seen = (seen or '') .. record
  if #seen < SPLIT * 10 then
    redis.call('HSET', bucket, field, seen)
    return 1
  end
  local digit = 20 - level
  local children = {}
  for at = 1, #seen, 10 do
    local byte = string.byte(seen, at + math.floor(digit / 2))
    local child = field .. string.format('%x', digit % 2 == 0 and math.floor(byte / 16) or byte % 16)
    children[child] = children[child] or {}
    table.insert(children[child], string.sub(seen, at, at + 9))
  end
  for child, records in pairs(children) do redis.call('HSET', bucket, child, table.concat(records)) end
  redis.call('HSET', bucket, field, '')
  return 1
end
"""

# A request into the shared queue, unless the dupefilter knew it ('' fingerprint: not filtered);
# a request out of it, done.
QUEUE = """
local function push(requests, data, dupefilter, stats, id, request, score, fingerprint, query_start)
  if fingerprint ~= '' and redis.call('SADD', dupefilter, fingerprint) == 0 then return 0 end
  redis.call('HSET', data, id, request)
  redis.call('ZADD', requests, score, id)
  if query_start == '1' then redis.call('HINCRBY', stats, 'queries', 1) end
  return 1
end
local function ack(leases, requests, data, id)
  local removed = redis.call('ZREM', leases, id) + redis.call('ZREM', requests, id)
  redis.call('HDEL', data, id)
  if removed > 0 then return 1 end
  return 0
end
"""

# The idempotent run: the answer of an operation already applied (KEYS[#KEYS - 1]: applied:<id>),
# else the script's answer, kept for a second sending.
APPLIED_BEFORE = """
local applied = redis.call('GET', KEYS[#KEYS - 1])
if applied then return cjson.decode(applied) end
local function run()
"""
APPLIED_AFTER = f"""
end
local answer = run()
redis.call('SET', KEYS[#KEYS - 1], cjson.encode(answer), 'PX', {APPLIED_SECONDS * 1000})
return answer
"""


def once(*parts: str) -> str:
    """A guarded script (its key list ends with applied:<id>, crawl) whose last part runs once per id."""
    *helpers, body = parts
    return SHEBANG + GUARD + "".join(helpers) + APPLIED_BEFORE + body + APPLIED_AFTER


# KEYS: crawl. ARGV: a new crawl id. -> the crawl's id (the new one if the crawl had none).
JOIN = (
    SHEBANG
    + """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""
)

# KEYS: requests, leases, data, stop, stats, applied, crawl. ARGV: crawl id, lease ms, requeue score, how many.
# Gives expired leases back, then leases up to ``how many`` requests.
# -> {queued, leased, id, request, id, request...} (none while the crawl is stopped)
POP = once(
    NOW_MS,
    """
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 100)) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], ARGV[3], id)
  redis.call('HINCRBY', KEYS[5], 'leases_expired', 1)
end
local out = {0, 0}
if redis.call('EXISTS', KEYS[4]) == 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[4])
  for i = 1, #popped, 2 do
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), popped[i])
    out[#out + 1] = popped[i]
    out[#out + 1] = redis.call('HGET', KEYS[3], popped[i]) or ''
  end
end
out[1] = redis.call('ZCARD', KEYS[1])
out[2] = redis.call('ZCARD', KEYS[2])
return out
""",
)

# KEYS: requests, data, dupefilter, leases, stats, applied, crawl. ARGV: crawl id, then for each request:
# id, request, score, fingerprint, the id of the lease it replaces (''), '1' if a query's first page.
# -> for each request, 1 when it was added (0: the dupefilter knew it)
PUSH = once(
    QUEUE,
    """
local added = {}
for i = 2, #ARGV, 6 do
  added[#added + 1] = push(KEYS[1], KEYS[2], KEYS[3], KEYS[5], ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 5])
  if ARGV[i + 4] ~= '' then ack(KEYS[4], KEYS[1], KEYS[2], ARGV[i + 4]) end
end
return added
""",
)

# The whole of a paid page, in one call: its notes checked against the seen notes and the new
# ones appended to the items list, the requests it made pushed (with their dupefilter entries),
# its lease acked, the crawl's counters. Nothing of it can be half done. A new note that wants its
# details (-a details=) is held instead: it goes into ``held`` and its detail call into the queue
# (leased like a page), and that call delivers it whole (DETAIL).
# KEYS: items, stats, seen count, requests, data, dupefilter, leases, held, a seen bucket per note, applied, crawl.
# ARGV: crawl id, lease ('' none), notes n, requests m, then n x (record, field, id, note as JSON,
# then its detail call's id, request, score, fingerprint: all '' when it wants none),
# then m x (id, request, score, fingerprint, '1' if a query's first page).
# -> for each note, 1 when it is new and delivered, 2 when it is new and held for its details, 0 else
PAGE = once(
    SEEN_ADD,
    QUEUE,
    """
local n, m = tonumber(ARGV[3]), tonumber(ARGV[4])
local new, count = {}, 0
for i = 1, n do
  local a = 4 + (i - 1) * 8
  new[i] = seen_add(KEYS[8 + i], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
  if new[i] == 1 then
    if ARGV[a + 5] ~= '' then
      redis.call('HSET', KEYS[8], ARGV[a + 3], ARGV[a + 4])
      push(KEYS[4], KEYS[5], KEYS[6], KEYS[2], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8], '')
      redis.call('HINCRBY', KEYS[2], 'details_held', 1)
      new[i] = 2
    else
      redis.call('RPUSH', KEYS[1], ARGV[a + 4])
    end
    count = count + 1
  end
end
for j = 1, m do
  local a = 4 + n * 8 + (j - 1) * 5
  push(KEYS[4], KEYS[5], KEYS[6], KEYS[2], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5])
end
if ARGV[2] ~= '' and ack(KEYS[7], KEYS[4], KEYS[5], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'pages_paid', 1)
end
if count > 0 then
  redis.call('HINCRBY', KEYS[2], 'notes', count)
  redis.call('INCRBY', KEYS[3], count)
end
return new
""",
)

# A held note's detail call ended (fetched, failed, the note gone): the note, whole, into the items
# list, out of ``held``, and the call's lease acked, together. A note another worker already
# delivered (the lease had run out) is not delivered again.
# KEYS: items, held, leases, requests, data, stats, applied, crawl. ARGV: crawl id, lease ('' none),
# note id, the note as JSON, how its call ended (api.Details). -> 1 delivered, 0 delivered before
DETAIL = once(
    QUEUE,
    """
local delivered = 0
if redis.call('HDEL', KEYS[2], ARGV[3]) == 1 then
  redis.call('RPUSH', KEYS[1], ARGV[4])
  redis.call('HINCRBY', KEYS[6], 'details_' .. ARGV[5], 1)
  delivered = 1
end
if ARGV[2] ~= '' then ack(KEYS[3], KEYS[4], KEYS[5], ARGV[2]) end
return delivered
""",
)

# KEYS: leases, requests, data, stats, applied, crawl. ARGV: crawl id, counter ('' none), then ids.
# Requests done without a page (failed, rejected, set aside): they leave Redis; the counter goes up
# by the requests it removed (one done before is not counted again).
ACK = once(
    QUEUE,
    """
local n = 0
for i = 3, #ARGV do n = n + ack(KEYS[1], KEYS[2], KEYS[3], ARGV[i]) end
if ARGV[2] ~= '' and n > 0 then redis.call('HINCRBY', KEYS[4], ARGV[2], n) end
return n
""",
)

# KEYS: leases, requests, applied, crawl. ARGV: crawl id, requeue score, ids. Give taken requests back.
RELEASE = once(
    """
local n = 0
for i = 3, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[2], ARGV[i])
    n = n + 1
  end
end
return n
""",
)

# The heartbeat, one call. KEYS: leases, worker, stop, requests, items, stats, seen count, workers, crawl.
# ARGV: crawl id, lease ms, beat ms, time of day, worker id, ids.
# Renews the leases still ours, says the worker is alive (with how many it holds), reads the
# crawl-wide stop and the crawl's figures.
# -> {leases no longer ours, stop reason, message, worker, queued, leased, items, notes, pages paid, queries, workers}
BEAT = (
    SHEBANG
    + GUARD
    + NOW_MS
    + """
local n, gone = 0, {}
for i = 6, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[i])
    n = n + 1
  else
    gone[#gone + 1] = ARGV[i]
  end
end
redis.call('SET', KEYS[2], n .. ' requests in flight, last beat ' .. ARGV[4], 'PX', ARGV[3])
redis.call('ZADD', KEYS[8], now + tonumber(ARGV[3]), ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', now)
local stop = redis.call('HMGET', KEYS[3], 'reason', 'message', 'worker')
local figures = redis.call('HMGET', KEYS[6], 'pages_paid', 'queries')
return {gone, stop[1], stop[2], stop[3], redis.call('ZCARD', KEYS[4]), redis.call('ZCARD', KEYS[1]),
  redis.call('LLEN', KEYS[5]), redis.call('GET', KEYS[7]) or 0, figures[1] or 0, figures[2] or 0,
  redis.call('ZCARD', KEYS[8])}
"""
)

# The budget: one call counted, unless the crawl is stopped or the budget spent (then it stops).
SPEND_ONE = """
local function spend(stats, stop, budget, reason, worker)
  local s = redis.call('HMGET', stop, 'reason', 'message', 'worker')
  if s[1] then return s end
  local calls = redis.call('HINCRBY', stats, 'calls', 1)
  budget = tonumber(budget)
  if budget > 0 and calls > budget then
    redis.call('HINCRBY', stats, 'calls', -1)
    local message = 'the budget of ' .. budget .. ' calls (all workers together) is spent'
    local t = redis.call('TIME')
    redis.call('HSET', stop, 'reason', reason, 'message', message, 'worker', worker, 'at', t[1])
    return {reason, message, worker}
  end
  return false
end
"""

# The token's rate, changed by compare-and-set: a worker applies rate.py's rules to the state it
# last saw, and the change holds only if nobody changed it since (version ``v``).
# KEYS: ratelimit, stats, stop, applied, crawl. ARGV: crawl id, version seen, new state (JSON), then to
# spend a call as well: budget, reason, worker ('' : do not).
# -> {'OK', now ms, stop or false} | {'CHANGED', now ms, version, state}
RATE = once(
    NOW_MS,
    SPEND_ONE,
    """
local v = redis.call('HGET', KEYS[1], 'v') or '0'
if v ~= ARGV[2] then return {'CHANGED', now, v, redis.call('HGET', KEYS[1], 'state') or ''} end
redis.call('HSET', KEYS[1], 'v', tonumber(v) + 1, 'state', ARGV[3])
if ARGV[6] == '' then return {'OK', now, false} end
return {'OK', now, spend(KEYS[2], KEYS[3], ARGV[4], ARGV[5], ARGV[6])}
""",
)

# A booking slept on: send the call, if no 302 changed the rate's epoch meanwhile.
# KEYS: ratelimit, stats, stop, applied, crawl. ARGV: crawl id, epoch booked in, budget, reason, worker.
# -> {'OK', now ms, stop or false} | {'CHANGED', now ms, version, state}
SEND = once(
    NOW_MS,
    SPEND_ONE,
    """
local state = redis.call('HGET', KEYS[1], 'state')
if state and tostring(cjson.decode(state).epoch) ~= ARGV[2] then
  return {'CHANGED', now, redis.call('HGET', KEYS[1], 'v') or '0', state}
end
return {'OK', now, spend(KEYS[2], KEYS[3], ARGV[3], ARGV[4], ARGV[5])}
""",
)

# KEYS: stop. ARGV: reason, message, worker. The first stop wins; -> the reason in force.
STOP = (
    SHEBANG
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'message', ARGV[2], 'worker', ARGV[3], 'at', t[1])
end
return redis.call('HGET', KEYS[1], 'reason')
"""
)

# The whole crawl's verdict, claimed once by the worker that sees the crawl end as it leaves: nothing
# queued, nothing in flight, or a crawl-wide stop. KEYS: verdict, stats, stop, requests, leases, crawl.
# ARGV: crawl id, worker id. -> {the crawl's counters, its stop} (flat HGETALLs), or nil: not ended,
# or already claimed (SET NX: one worker only; ``reset`` and ``resume`` clear it).
VERDICT = (
    SHEBANG
    + GUARD
    + """
local stop = redis.call('HGET', KEYS[3], 'reason')
if not stop and (redis.call('ZCARD', KEYS[4]) > 0 or redis.call('ZCARD', KEYS[5]) > 0) then return false end
if not redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. (stop or 'finished') .. ' ' .. ARGV[2], 'NX') then return false end
return {redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
"""
)

# KEYS: stats, applied, crawl. ARGV: crawl id. A call counted and never sent: the budget gets it back, once.
REFUND = once(
    """
local calls = tonumber(redis.call('HGET', KEYS[1], 'calls') or '0')
if calls > 0 then redis.call('HINCRBY', KEYS[1], 'calls', -1) end
return 1
""",
)

SCRIPTS = {
    "join": JOIN,
    "pop": POP,
    "push": PUSH,
    "page": PAGE,
    "detail": DETAIL,
    "ack": ACK,
    "release": RELEASE,
    "beat": BEAT,
    "rate": RATE,
    "send": SEND,
    "stop": STOP,
    "refund": REFUND,
    "verdict": VERDICT,
}
# The scripts run once per operation id (``once``): their key list ends with applied:<id>, crawl.
IDEMPOTENT = frozenset({"pop", "push", "page", "detail", "ack", "release", "rate", "send", "refund"})
SHA = {name: hashlib.sha1(source.encode()).hexdigest() for name, source in SCRIPTS.items()}
