"""The Redis backend's server-side functions: the only code that runs inside Redis. Pure
text, no I/O.

They provide atomicity and nothing else: every value they store was computed by the
client with the daemon's own rules, and they only compare revisions and move bytes.

- ``apply``: a write. Answers a known request token with its record (``replay``);
  checks that each key read is still at the revision the client saw (``conflict``
  otherwise: the client reads again and retries); then applies each change — stores or
  deletes the value, moves its ``list`` index member, takes the next ``seq`` and appends
  the change to the agent's stream — and records the request token (with the ``seq``
  of the last change) for ``remember_ms``.
- ``page``: up to ``count`` index members after a member, with their values and the
  store's ``seq``, in one atomic read (``list``, ``export`` pages).
- ``copy``: an export's consistent copy of a store (``COPY``), expiring when unused.
- ``stage`` / ``commit``: an import's staged entries, then all of them stored in one step.

The same text is loaded as a library with ``FUNCTION LOAD`` (called with ``FCALL``)
where the server allows it, else run with ``EVALSHA`` (loaded on ``NOSCRIPT``): the
library's name and its functions' names carry a hash of the text, so clients of
different versions never call each other's code.
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = ["FUNCTION_NAMES", "LIBRARY_NAME", "eval_script", "library_source"]

_HELPERS: Final = r"""
local function member_of(value, key)
  return string.sub(value, 17, 24) .. key
end

local function put(keys, key, value, maxlen)
  local old = redis.call('HGET', keys[1], key)
  if old then
    redis.call('ZREM', keys[2], member_of(old, key))
  end
  redis.call('HSET', keys[1], key, value)
  redis.call('ZADD', keys[2], 0, member_of(value, key))
  local seq = redis.call('INCR', keys[3])
  redis.call('XADD', keys[4], 'MAXLEN', '~', maxlen, '0-' .. seq, 't', 'p', 'k', key, 'v', value)
  return seq
end

local function remove(keys, key, maxlen)
  local old = redis.call('HGET', keys[1], key)
  if not old then
    return nil
  end
  redis.call('HDEL', keys[1], key)
  redis.call('ZREM', keys[2], member_of(old, key))
  local seq = redis.call('INCR', keys[3])
  redis.call('XADD', keys[4], 'MAXLEN', '~', maxlen, '0-' .. seq, 't', 'd', 'k', key)
  return seq
end
"""

_FUNCTIONS: Final = {
    # KEYS: entries, index, seq, stream, token.
    # ARGV: maxlen, remember_ms, token record ('' = none), n checks, (key, revision or
    # '' for absent) * n, m changes, (key, stored value or '' to delete) * m.
    "apply": r"""
local function apply(keys, args)
  if args[3] ~= '' then
    local known = redis.call('GET', keys[5])
    if known then
      return {'replay', known}
    end
  end
  local i = 5
  for _ = 1, tonumber(args[4]) do
    local current = redis.call('HGET', keys[1], args[i])
    if args[i + 1] == '' then
      if current then
        return {'conflict'}
      end
    elseif (not current) or string.sub(current, 1, 16) ~= args[i + 1] then
      return {'conflict'}
    end
    i = i + 2
  end
  local changes = tonumber(args[i])
  i = i + 1
  local seq = -1
  for _ = 1, changes do
    if args[i + 1] == '' then
      seq = remove(keys, args[i], args[1]) or seq
    else
      seq = put(keys, args[i], args[i + 1], args[1])
    end
    i = i + 2
  end
  if seq ~= -1 and args[3] ~= '' then
    redis.call('SET', keys[5], seq .. '|' .. args[3], 'PX', args[2])
  end
  return {'ok', seq}
end
""",
    # KEYS: index, entries, seq (or an export's marker). ARGV: member to start after
    # ('' = from the start), count, ttl_ms to refresh ('0' = none), '1' if the seq key
    # must exist (an export's copy).
    "page": r"""
local function page(keys, args)
  local seq = redis.call('GET', keys[3])
  if not seq then
    if args[4] == '1' then
      return {'expired'}
    end
    seq = '0'
  end
  if args[3] ~= '0' then
    redis.call('PEXPIRE', keys[1], args[3])
    redis.call('PEXPIRE', keys[2], args[3])
    redis.call('PEXPIRE', keys[3], args[3])
  end
  local start = '-'
  if args[1] ~= '' then
    start = '(' .. args[1]
  end
  local members = redis.call('ZRANGE', keys[1], start, '+', 'BYLEX', 'LIMIT', 0, args[2])
  local out = {'ok', seq}
  if #members == 0 then
    return out
  end
  local names = {}
  for j, member in ipairs(members) do
    names[j] = string.sub(member, 9)
  end
  local values = redis.call('HMGET', keys[2], unpack(names))
  for j, member in ipairs(members) do
    out[#out + 1] = member
    out[#out + 1] = values[j]
  end
  return out
end
""",
    # KEYS: entries, index, seq, entries copy, index copy, marker. ARGV: ttl_ms.
    "copy": r"""
local function copy(keys, args)
  local seq = redis.call('GET', keys[3]) or '0'
  redis.call('DEL', keys[4], keys[5])
  if redis.call('EXISTS', keys[1]) == 1 then
    redis.call('COPY', keys[1], keys[4])
    redis.call('PEXPIRE', keys[4], args[1])
  end
  if redis.call('EXISTS', keys[2]) == 1 then
    redis.call('COPY', keys[2], keys[5])
    redis.call('PEXPIRE', keys[5], args[1])
  end
  redis.call('SET', keys[6], seq, 'PX', args[1])
  return seq
end
""",
    # KEYS: staged. ARGV: '1' for a new import, ttl_ms, max bytes, bytes of this batch,
    # (key, stored value) * n.
    "stage": r"""
local function stage(keys, args)
  if args[1] ~= '1' and redis.call('EXISTS', keys[1]) == 0 then
    return {'unknown'}
  end
  local total = redis.call('HINCRBY', keys[1], '', args[4])
  if total > tonumber(args[3]) then
    redis.call('DEL', keys[1])
    return {'too_large'}
  end
  for i = 5, #args, 2 do
    redis.call('HSET', keys[1], args[i], args[i + 1])
  end
  redis.call('PEXPIRE', keys[1], args[2])
  return {'ok', redis.call('HLEN', keys[1]) - 1}
end
""",
    # KEYS: entries, index, seq, stream, staged. ARGV: maxlen.
    "commit": r"""
local function commit(keys, args)
  if redis.call('EXISTS', keys[5]) == 0 then
    return {'unknown'}
  end
  local staged = redis.call('HGETALL', keys[5])
  local count = 0
  for i = 1, #staged, 2 do
    if staged[i] ~= '' then
      put(keys, staged[i], staged[i + 1], args[1])
      count = count + 1
    end
  end
  redis.call('DEL', keys[5])
  return {'ok', tonumber(redis.call('GET', keys[3]) or '0'), count}
end
""",
}

_VERSION: Final = hashlib.sha1(
    (_HELPERS + "".join(_FUNCTIONS.values())).encode(), usedforsecurity=False
).hexdigest()[:12]
LIBRARY_NAME: Final = f"sessiond_{_VERSION}"
FUNCTION_NAMES: Final = {name: f"{LIBRARY_NAME}_{name}" for name in _FUNCTIONS}
"""Our name of each function → its name on the server (``FCALL``)."""


def library_source() -> str:
    """The library for ``FUNCTION LOAD``."""
    registrations = "".join(
        f"redis.register_function('{FUNCTION_NAMES[name]}', {name})\n" for name in _FUNCTIONS
    )
    return f"#!lua name={LIBRARY_NAME}\n{_HELPERS}{''.join(_FUNCTIONS.values())}{registrations}"


def eval_script(name: str) -> str:
    """One function as a script for ``EVAL``/``EVALSHA``."""
    return f"{_HELPERS}{_FUNCTIONS[name]}\nreturn {name}(KEYS, ARGV)\n"
