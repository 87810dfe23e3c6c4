"""Polling with a deadline, for the tests that wait on another process (a replica, a kubelet, a scheduler)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 60, what: str = "the condition", interval: float = 1.0) -> T:
    """Poll ``check()`` until it returns a truthy value and return that value; fail with ``what`` after ``timeout``
    seconds. The first polls come quickly (50 ms apart), then the pause doubles up to ``interval``, so a quick
    condition is seen at once and a slow one (a scheduler run) does not hammer the server it asks."""
    deadline = time.monotonic() + timeout
    pause = min(0.05, interval)
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, interval)
