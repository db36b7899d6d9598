"""Server-side limits (study_app.guard): the admin lockout with exponential back-off, per address and
in total, and the cap on new participants per address; a fake clock stands in for time only."""
import pytest

from study_app.guard import (FREE_FAILURES, GLOBAL_FREE_FAILURES, GLOBAL_RESET_S, LOCK_BASE_S, LOCK_MAX_S,
                             RateLimiter, SignInGuard, lock_seconds)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_lock_doubles_after_the_free_failures_up_to_the_cap():
    assert [lock_seconds(n, 5) for n in range(4, 9)] == [0, LOCK_BASE_S, 2 * LOCK_BASE_S, 4 * LOCK_BASE_S,
                                                         8 * LOCK_BASE_S]
    assert lock_seconds(100, 5) == LOCK_MAX_S


def test_an_address_is_locked_out_and_backs_off_and_the_right_password_clears_it(caplog):
    clock = Clock()
    guard = SignInGuard(clock=clock)
    for _ in range(FREE_FAILURES - 1):
        assert guard.failed("10.0.0.1") == 0
    assert guard.wait_seconds("10.0.0.1") == 0
    assert guard.failed("10.0.0.1") == LOCK_BASE_S
    assert guard.wait_seconds("10.0.0.1") == LOCK_BASE_S and guard.wait_seconds("10.0.0.2") == 0
    clock.now += LOCK_BASE_S
    assert guard.wait_seconds("10.0.0.1") == 0
    assert guard.failed("10.0.0.1") == 2 * LOCK_BASE_S                  # one more failure: twice the wait
    assert "admin sign-in failed from 10.0.0.1" in caplog.text and "locked for 60 s" in caplog.text
    clock.now += 2 * LOCK_BASE_S
    guard.succeeded("10.0.0.1")
    assert guard.failed("10.0.0.1") == 0                               # a fresh count after a sign-in


def test_many_addresses_together_are_locked_out_globally():
    clock = Clock()
    guard = SignInGuard(clock=clock)
    for i in range(GLOBAL_FREE_FAILURES):
        guard.failed(f"10.0.{i}.1")                                     # one guess each: no address lockout
    assert guard.wait_seconds("10.9.9.9") == pytest.approx(LOCK_BASE_S)  # a new address waits as well
    clock.now += GLOBAL_RESET_S + LOCK_BASE_S + 1
    assert guard.wait_seconds("10.9.9.9") == 0 and guard.failed("10.9.9.9") == 0   # the total decays


def test_new_participants_per_address_are_capped_per_hour():
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    assert [limiter.allow("10.0.0.1", 3) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("10.0.0.2", 3) and limiter.allow(None, 3) and limiter.allow("10.0.0.1", 0)
    clock.now += 3601
    assert limiter.allow("10.0.0.1", 3)
