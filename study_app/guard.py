"""Server-side limits that no browser session can reset: the admin sign-in's lockout and the cap on
new participants per client address. Both keep their state in the server process (one instance per
served study, shared by every session), so a reload, a new browser or a new session starts where
the last one left off; a server restart clears them.

Admin sign-in (`SignInGuard`): after FREE_FAILURES wrong passwords from one address, that address
must wait LOCK_BASE_S, doubling with every further failure (up to LOCK_MAX_S); the same holds for
all addresses together after GLOBAL_FREE_FAILURES, so guessing from many addresses (or from behind
one proxy) is slowed too. A right password clears its address's count, not the global one, which
decays after GLOBAL_RESET_S without failures. Every failure is logged with its address.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger("study_app")

FREE_FAILURES = 5           # per address, before the first lockout
GLOBAL_FREE_FAILURES = 20   # all addresses together
LOCK_BASE_S = 30.0
LOCK_MAX_S = 3600.0
GLOBAL_RESET_S = 3600.0
IDLE_TIMEOUT_S = 30 * 60     # a signed-in admin session without a click for this long is signed out
LOCAL = "local"             # the key of connections Streamlit reports without an address (localhost)


def lock_seconds(failures: int, free: int) -> float:
    """The wait after `failures` consecutive failures: none for the first `free`, then LOCK_BASE_S,
    doubling with each further failure, at most LOCK_MAX_S."""
    if failures < free:
        return 0.0
    return min(LOCK_MAX_S, LOCK_BASE_S * 2 ** (failures - free))


@dataclass
class _Count:
    failures: int = 0
    locked_until: float = 0.0


@dataclass
class SignInGuard:
    """Failed admin sign-ins per client address and in total, with exponential back-off."""
    clock: Callable[[], float] = time.monotonic
    _by_address: dict = field(default_factory=dict)
    _all: _Count = field(default_factory=_Count)
    _last_failure: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_seconds(self, address: str | None) -> float:
        """Seconds until `address` may try again (0: now)."""
        now = self.clock()
        with self._lock:
            self._decay(now)
            own = self._by_address.get(address or LOCAL, _Count())
            return max(0.0, own.locked_until - now, self._all.locked_until - now)

    def _decay(self, now: float) -> None:
        if self._all.failures and now - self._last_failure > GLOBAL_RESET_S:
            self._all = _Count()

    def failed(self, address: str | None) -> float:
        """Record a wrong password from `address`; returns the lockout it now has (0: none)."""
        now = self.clock()
        key = address or LOCAL
        with self._lock:
            self._decay(now)
            own = self._by_address.setdefault(key, _Count())
            own.failures += 1
            self._all.failures += 1
            self._last_failure = now
            own_wait = lock_seconds(own.failures, FREE_FAILURES)
            all_wait = lock_seconds(self._all.failures, GLOBAL_FREE_FAILURES)
            own.locked_until = max(own.locked_until, now + own_wait)
            self._all.locked_until = max(self._all.locked_until, now + all_wait)
            wait = max(own_wait, all_wait)
            log.warning("admin sign-in failed from %s (%d failures from it, %d in total)%s", key, own.failures,
                        self._all.failures, f"; locked for {wait:.0f} s" if wait else "")
            return wait

    def refused(self, address: str | None, wait: float) -> None:
        log.warning("admin sign-in refused from %s: locked for another %.0f s", address or LOCAL, wait)

    def succeeded(self, address: str | None) -> None:
        with self._lock:
            self._by_address.pop(address or LOCAL, None)
        log.info("admin signed in from %s", address or LOCAL)


class RateLimiter:
    """At most `limit` events per client address in a sliding hour (new participants)."""

    def __init__(self, clock=time.monotonic, window_s: float = 3600.0):
        self.clock, self.window_s = clock, window_s
        self._events: dict[str, deque] = {}
        self._lock = threading.Lock()

    def allow(self, address: str | None, limit: int) -> bool:
        """Record an event for `address` and say whether it is within the limit (refused events are
        not recorded). Connections without an address (localhost) are not limited."""
        if not limit or address is None:
            return True
        now = self.clock()
        with self._lock:
            events = self._events.setdefault(address, deque())
            while events and now - events[0] > self.window_s:
                events.popleft()
            if len(events) >= limit:
                log.warning("new participant refused from %s: %d started in the last hour", address, len(events))
                return False
            events.append(now)
            return True
