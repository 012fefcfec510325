"""The per-client rate limiter on its own, on a clock the test moves."""

import pytest

from intake.guards import RateLimited, SubmissionRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_client_gets_its_burst_then_one_more_per_interval() -> None:
    clock = Clock()
    limiter = SubmissionRateLimiter("3/minute", clock=clock)
    for _ in range(3):
        await limiter.check("203.0.113.7")
    with pytest.raises(RateLimited) as refused:
        await limiter.check("203.0.113.7")
    assert refused.value.retry_after == 20  # one request per 60/3 s
    await limiter.check("198.51.100.1")  # other clients are counted on their own
    clock.now += 20
    await limiter.check("203.0.113.7")
    with pytest.raises(RateLimited):
        await limiter.check("203.0.113.7")


async def test_a_refused_request_does_not_use_up_the_allowance() -> None:
    clock = Clock()
    limiter = SubmissionRateLimiter("1/minute", clock=clock)
    await limiter.check("203.0.113.7")
    for _ in range(5):
        with pytest.raises(RateLimited):
            await limiter.check("203.0.113.7")
    clock.now += 60
    await limiter.check("203.0.113.7")


async def test_idle_clients_are_forgotten_so_memory_stays_bounded() -> None:
    clock = Clock()
    limiter = SubmissionRateLimiter("10/minute", clock=clock)
    for n in range(1000):
        await limiter.check(f"10.0.{n // 256}.{n % 256}")
    clock.now += limiter.SWEEP_EVERY_SECONDS + 60
    await limiter.check("203.0.113.7")
    assert limiter.tracked_clients == 1


@pytest.mark.parametrize("now", [196.88728398270516, 32716.664605429436, 262129.06386380675])
async def test_a_new_clients_first_request_passes_whatever_the_clock_reads(now: float) -> None:
    # At these clock readings ``now + 60 - 60 > now`` in floating point; the first request must still pass.
    clock = Clock()
    clock.now = now
    limiter = SubmissionRateLimiter("1/minute", clock=clock)
    await limiter.check("192.0.2.1")
    with pytest.raises(RateLimited) as refused:
        await limiter.check("192.0.2.1")
    assert refused.value.retry_after == 60


@pytest.mark.parametrize("now", [196.88728398270516, 32716.664605429436, 262129.06386380675])
async def test_a_client_that_waited_exactly_one_interval_passes_whatever_the_clock_reads(now: float) -> None:
    clock = Clock()
    clock.now = now
    limiter = SubmissionRateLimiter("3/minute", clock=clock)
    for _ in range(3):
        await limiter.check("192.0.2.1")
    with pytest.raises(RateLimited) as refused:
        await limiter.check("192.0.2.1")
    assert refused.value.retry_after == 20
    clock.now += 20
    await limiter.check("192.0.2.1")
