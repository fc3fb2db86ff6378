"""Sign-in for the web interface when it listens beyond the machine itself.

A loopback bind needs no password (only the machine's own users reach it, as before). A
non-loopback bind (``--host 0.0.0.0``, a LAN address) needs one: the plain password from
``AUDIO_ANALYSIS_WEB_PASSWORD``, or a salted scrypt hash that ``daemon.py --set_password``
stores in the configuration file (``web_password_hash``); ``--no_auth`` turns the check
off, loudly.

Decisions, and why:

* **Server-side sessions**, not signed cookies: the cookie is a random 256-bit token that
  names an entry in memory, so signing out and expiry take effect at once on the server,
  no signing key has to be kept, and no extra dependency (``itsdangerous``) is needed. The
  price: a restart of the daemon signs everyone out. At most ``MAX_SESSIONS`` live; the
  oldest goes first beyond.
* The cookie is ``HttpOnly`` and ``SameSite=Strict``, and not ``Secure``: the daemon serves
  plain HTTP and cannot know whether a TLS proxy stands in front of it (a proxy that
  terminates HTTPS should add ``Secure`` itself).
* **The API needs the session too** (on a non-loopback bind), not a bearer of the password:
  a password on every request would cost one scrypt per request (a CPU lever for anyone on
  the LAN) and sit in every script. A script signs in once (``POST /login`` with
  ``password``) and keeps the cookie (``curl -c jar -b jar``).
* **Sign-in attempts are rate-limited per client address** (a token bucket of
  ``ATTEMPTS_BURST`` that refills one attempt every ``ATTEMPT_REFILL_S`` seconds) and in
  total (``GLOBAL_BURST``), so neither one address nor many can try passwords quickly; the
  table of addresses is bounded (``MAX_TRACKED``, least recently seen dropped first).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from audio.errors import UsageError

SESSION_COOKIE = "aa_session"
SESSION_TTL_S = 12 * 3600.0
"""A session ends this long after sign-in, used or not."""
MAX_SESSIONS = 256
ATTEMPTS_BURST = 5
ATTEMPT_REFILL_S = 12.0
GLOBAL_BURST = 30
GLOBAL_REFILL_S = 2.0
MAX_TRACKED = 1024
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
"""scrypt's cost: 16 MiB and some 50 ms per check on a small ARM board; the rate limit
bounds how often anyone can make the daemon pay it."""


class PasswordError(UsageError, ValueError):
    """A password that cannot be used (too short, too long) or a malformed stored hash."""


def check_new_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordError(f"the password is longer than {MAX_PASSWORD_LENGTH} characters")
    return password


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64): what ``--set_password`` stores."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return (f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}$"
            f"{b64(salt).decode()}${b64(digest).decode()}")


def verify_password(password: str, stored: str) -> bool:
    """Does ``password`` match the stored hash? Constant time in the comparison."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.scrypt(password.encode()[:MAX_PASSWORD_LENGTH * 4],
                                salt=base64.b64decode(salt, validate=True),
                                n=int(n), r=int(r), p=int(p), dklen=len(expected),
                                maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError) as error:
        raise PasswordError(f"the stored web password hash is malformed ({error})") from None
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class Password:
    """The one password of the page: plain (from the environment) or a stored hash."""

    plain: str | None = None
    hashed: str | None = None

    def matches(self, attempt: str) -> bool:
        if self.plain is not None:
            return hmac.compare_digest(hashlib.sha256(attempt.encode()).digest(),
                                       hashlib.sha256(self.plain.encode()).digest())
        if self.hashed is not None:
            return verify_password(attempt, self.hashed)
        return False


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class RateLimiter:
    """Token buckets per key (a client address) and one for all keys; bounded memory."""

    def __init__(self, burst: int = ATTEMPTS_BURST, refill_s: float = ATTEMPT_REFILL_S,
                 global_burst: int = GLOBAL_BURST, global_refill_s: float = GLOBAL_REFILL_S,
                 max_tracked: int = MAX_TRACKED,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._burst, self._refill = burst, refill_s
        self._gburst, self._grefill = global_burst, global_refill_s
        self._max = max_tracked
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._global = _Bucket(float(global_burst), clock())
        self._lock = threading.Lock()

    @staticmethod
    def _fill(bucket: _Bucket, now: float, burst: int, refill: float) -> None:
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.stamp) / refill)
        bucket.stamp = now

    def acquire(self, key: str) -> float:
        """Take one attempt for ``key``: 0 when allowed, else the seconds to wait."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.pop(key, None) or _Bucket(float(self._burst), now)
            self._buckets[key] = bucket  # most recently seen last
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
            self._fill(bucket, now, self._burst, self._refill)
            self._fill(self._global, now, self._gburst, self._grefill)
            if bucket.tokens < 1:
                return (1 - bucket.tokens) * self._refill
            if self._global.tokens < 1:
                return (1 - self._global.tokens) * self._grefill
            bucket.tokens -= 1
            self._global.tokens -= 1
            return 0.0

    def tracked(self) -> int:
        with self._lock:
            return len(self._buckets)


class Sessions:
    """Signed-in sessions: random tokens kept in memory until they expire or sign out."""

    def __init__(self, ttl_s: float = SESSION_TTL_S, max_sessions: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._max = max_sessions
        self._clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def create(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._expiry[token] = self._clock() + self.ttl_s
            while len(self._expiry) > self._max:
                self._expiry.popitem(last=False)
        return token

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            expiry = self._expiry.get(token)
            if expiry is None:
                return False
            if expiry <= self._clock():
                del self._expiry[token]
                return False
            return True

    def end(self, token: str | None) -> None:
        with self._lock:
            self._expiry.pop(token or "", None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)


class Auth:
    """What a non-loopback bind checks: the password, the sessions, the attempt limiter."""

    def __init__(self, password: Password, *, sessions: Sessions | None = None,
                 limiter: RateLimiter | None = None) -> None:
        self.password = password
        self.sessions = sessions if sessions is not None else Sessions()
        self.limiter = limiter if limiter is not None else RateLimiter()

    def cookie_header(self, token: str) -> str:
        return (f"{SESSION_COOKIE}={token}; Path=/; Max-Age={int(self.sessions.ttl_s)}; "
                f"HttpOnly; SameSite=Strict")

    @staticmethod
    def clear_cookie_header() -> str:
        return f"{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
