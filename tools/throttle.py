"""Sign-in throttling: failed attempts per account and per client, with exponential backoff.

Every attempt to prove a password (sign-in, and registration, whose 409 tells that an email
exists) first asks `LoginThrottle.attempt(account=..., client=...)`. Per key (one account, one
client address) the store keeps the number of failures and the time of the last one:

* below `max_failures` an attempt goes ahead and is counted *before* the password is checked (so
  concurrent guesses cannot all slip past one check);
* from `max_failures` on the key is locked for `lockout_base_s * 2 ** (failures - max_failures)`
  seconds (at most `lockout_max_s`) after its last failure: attempts are refused with
  `TooManyRequestsError` (429, `Retry-After` = the rest of the lock) without touching the
  password, and are not counted; the first attempt after the lock goes ahead (and doubles the next
  lock if it fails too);
* failures are forgotten `window_s` seconds after the last one (or when the lock ends, if later);
* a success resets the account's counter, and takes back the client's count for that attempt (a
  success never resets the client's counter: an attacker's own account must not wash it).

An attempt that ends in another error (busy, database down) is taken back for both keys.

Client keys are the remote address (IPv6: its /64, which one host usually owns whole). Behind a
reverse proxy the server must see the real address (uvicorn `--proxy-headers` with
`--forwarded-allow-ips` set to the proxy), or every client shares one counter.

Where the state lives: `RedisThrottleStore` when `REDIS_URL` is set (one counter shared by every
replica, updated atomically by a Lua script), else `MemoryThrottleStore` in this process: with
several replicas and no Redis each replica counts on its own, so an attacker gets up to
`replicas x max_failures` tries per lock; several replicas need Redis anyway for the event bus.
The memory store keeps at most `max_keys` keys (least recently used dropped first).
"""

from __future__ import annotations

import abc
import collections
import hashlib
import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tools.errors import AuthenticationError, ConflictError, TooManyRequestsError

THROTTLED_MESSAGE = "Too many failed sign-in attempts; try again later"


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many failures a key may have before it is locked, and for how long."""

    max_failures: int
    window_s: float
    lockout_base_s: float
    lockout_max_s: float

    def lockout_s(self, failures: int) -> float:
        """Seconds a key with `failures` failures stays locked after its last one (0: not locked)."""
        if failures < self.max_failures:
            return 0.0
        exponent = min(failures - self.max_failures, 60)  # 2**60 * base is past any cap
        return float(min(self.lockout_base_s * 2**exponent, self.lockout_max_s))

    def keep_s(self, failures: int) -> float:
        """How long a key's record is kept after its last failure."""
        return max(self.window_s, self.lockout_s(failures))


def decide(failures: int, last: float, now: float, policy: ThrottlePolicy) -> tuple[float, int]:
    """`(blocked_for_s, failures_after)` for one attempt on a key with `failures` and `last`.

    blocked_for_s > 0: refused, nothing counted; else the attempt is counted (failures_after).
    The Lua script of `RedisThrottleStore` is the same function.
    """
    if failures > 0 and now - last > policy.keep_s(failures):
        failures = 0
    lock = policy.lockout_s(failures)
    if lock > 0 and now < last + lock:
        return last + lock - now, failures
    return 0.0, failures + 1


class ThrottleStore(abc.ABC):
    """Failure counters by key. `attempt` is atomic: check and count in one step."""

    @abc.abstractmethod
    def attempt(self, key: str, now: float, policy: ThrottlePolicy) -> float:
        """0.0 when the attempt may go ahead (now counted as a failure), else seconds still locked."""

    @abc.abstractmethod
    def undo(self, key: str) -> None:
        """Take back one counted attempt (it was not a failure)."""

    @abc.abstractmethod
    def reset(self, key: str) -> None:
        """Forget the key's failures."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (the Redis store)."""


class MemoryThrottleStore(ThrottleStore):
    """Counters in this process (see the module docstring for several replicas)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._lock = threading.Lock()
        # key -> [failures, last failure time, keep until, the last failure time before it]
        self._entries: collections.OrderedDict[str, list[float]] = collections.OrderedDict()

    def attempt(self, key: str, now: float, policy: ThrottlePolicy) -> float:
        with self._lock:
            entry = self._entries.get(key)
            failures, last = (int(entry[0]), entry[1]) if entry is not None else (0, 0.0)
            blocked, after = decide(failures, last, now, policy)
            if blocked > 0:
                return blocked
            self._entries[key] = [after, now, now + policy.keep_s(after), last]
            self._entries.move_to_end(key)
            self._prune(now)
            return 0.0

    def _prune(self, now: float) -> None:
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)
        # Drop a few expired records from the old end (amortised; the LRU end holds the oldest).
        for _ in range(8):
            if not self._entries:
                break
            key, entry = next(iter(self._entries.items()))
            if entry[2] >= now:
                break
            del self._entries[key]

    def undo(self, key: str) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > 0:
                entry[0] -= 1
                entry[1] = entry[3]  # the lock runs from the last real failure again

    def reset(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def failures(self, key: str) -> int:
        """Counted failures of `key` (tests and diagnostics)."""
        with self._lock:
            entry = self._entries.get(key)
            return int(entry[0]) if entry is not None else 0


# KEYS[1]; ARGV: now, max_failures, window_s, lockout_base_s, lockout_max_s. Same as `decide`.
_ATTEMPT_LUA = """
local now = tonumber(ARGV[1])
local maxf = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local base = tonumber(ARGV[4])
local maxlock = tonumber(ARGV[5])
local function lockout(n)
  if n < maxf then return 0 end
  local e = n - maxf
  if e > 60 then e = 60 end
  return math.min(base * 2 ^ e, maxlock)
end
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
if n > 0 and now - last > math.max(window, lockout(n)) then n = 0 end
local lock = lockout(n)
if lock > 0 and now < last + lock then return tostring(last + lock - now) end
n = n + 1
redis.call('HSET', KEYS[1], 'n', n, 't', tostring(now), 'p', tostring(last))
redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(window, lockout(n)) * 1000) + 1000)
return '0'
"""

_UNDO_LUA = """
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if n > 0 then redis.call('HSET', KEYS[1], 'n', n - 1, 't', redis.call('HGET', KEYS[1], 'p') or '0') end
return n
"""


class RedisThrottleStore(ThrottleStore):
    """Counters in Redis hashes `<prefix>:throttle:<key>` shared by every replica."""

    def __init__(self, url: str, *, prefix: str = "vta", client: Any = None) -> None:
        import redis

        self.prefix = prefix
        self._client = client or redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        self._attempt = self._client.register_script(_ATTEMPT_LUA)
        self._undo = self._client.register_script(_UNDO_LUA)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:throttle:{key}"

    def attempt(self, key: str, now: float, policy: ThrottlePolicy) -> float:
        args = [repr(now), str(policy.max_failures), repr(policy.window_s)]
        args += [repr(policy.lockout_base_s), repr(policy.lockout_max_s)]
        result = self._attempt(keys=[self._key(key)], args=args)
        return float(result.decode() if isinstance(result, bytes) else result)

    def undo(self, key: str) -> None:
        self._undo(keys=[self._key(key)])

    def reset(self, key: str) -> None:
        self._client.delete(self._key(key))

    def failures(self, key: str) -> int:
        value = self._client.hget(self._key(key), "n")
        return int(value) if value is not None else 0

    def close(self) -> None:
        self._client.close()


def account_key(email: str) -> str:
    """Key of an account: the normalised email, hashed (any length or content from a form)."""
    digest = hashlib.sha256((email or "").strip().lower().encode("utf-8", "surrogatepass")).hexdigest()
    return f"acct:{digest[:32]}"


def client_key(host: str | None) -> str | None:
    """Key of a client address (IPv6: its /64); None when the address is unknown."""
    if not host:
        return None
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return f"client:{host[:64]}"  # e.g. "testclient"
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return f"client:{addr.ipv4_mapped}"
        return f"client:{ipaddress.IPv6Network((addr, 64), strict=False)}"
    return f"client:{addr}"


class LoginThrottle:
    """Per-account and per-client limits over one store (`clock` injectable for tests)."""

    def __init__(
        self,
        store: ThrottleStore,
        *,
        account: ThrottlePolicy,
        client: ThrottlePolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.account_policy = account
        self.client_policy = client
        self.clock = clock

    @contextmanager
    def attempt(self, *, account: str | None, client: str | None) -> Iterator[None]:
        """Guard one password check: TooManyRequestsError when a key is locked.

        No exception in the block: success (account reset, client count taken back).
        AuthenticationError / ConflictError: a failure (stays counted). Anything else: taken back.
        """
        now = self.clock()
        counted: list[str] = []
        checks: list[tuple[str, ThrottlePolicy]] = []
        ckey = client_key(client)
        if ckey is not None:
            checks.append((ckey, self.client_policy))
        if account is not None:
            checks.append((account_key(account), self.account_policy))
        try:
            for key, policy in checks:
                blocked = self.store.attempt(key, now, policy)
                if blocked > 0:
                    raise TooManyRequestsError(THROTTLED_MESSAGE, retry_after_s=blocked)
                counted.append(key)
        except BaseException:
            for key in counted:
                self.store.undo(key)
            raise
        try:
            yield
        except (AuthenticationError, ConflictError):
            raise
        except BaseException:
            for key in counted:
                self.store.undo(key)
            raise
        for key in counted:
            if key.startswith("acct:"):
                self.store.reset(key)
            else:
                self.store.undo(key)

    def close(self) -> None:
        self.store.close()
