"""One way to retry: tenacity's ``Retrying`` with exponential backoff and jitter, the last error
re-raised as it was. Every source (Yahoo, State Street, FMP) and every loader (JSONL files,
valuation groups) retries through it; what counts as transient, how many attempts and how long
the waits are is theirs to say."""

from __future__ import annotations

import time
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter


def retrying(on: type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool], *, attempts: int,
             initial: float, most: float, sleep: Callable[[float], None] = time.sleep,
             before_sleep: Callable[[RetryCallState], None] | None = None) -> Retrying:
    """A ``Retrying`` that calls again on ``on`` (exception types, or a predicate), at most
    ``attempts`` times in all, waiting ``initial`` seconds, doubling with jitter up to ``most``."""
    retry = retry_if_exception_type(on) if isinstance(on, (type, tuple)) else retry_if_exception(on)
    return Retrying(retry=retry, stop=stop_after_attempt(max(1, attempts)), wait=wait_exponential_jitter(initial=initial, max=most),
                    sleep=sleep, before_sleep=before_sleep, reraise=True)
