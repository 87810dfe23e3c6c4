"""The S3 requests a piece of code makes: counted by operation where s3fs sends every one (``_call_s3``)."""

from __future__ import annotations

import collections
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class S3Calls:
    """Counts the S3 operations s3fs sends while :meth:`counting` (installed on creation, for the whole process)."""

    def __init__(self) -> None:
        import s3fs

        self.active = False
        self.calls: collections.Counter[str] = collections.Counter()
        original = s3fs.S3FileSystem._call_s3
        counter = self

        @functools.wraps(original)
        async def call(fs: Any, method: str, *args: Any, **kwargs: Any) -> Any:
            if counter.active:
                counter.calls[method] += 1
            return await original(fs, method, *args, **kwargs)

        s3fs.S3FileSystem._call_s3 = call

    @contextmanager
    def counting(self, reset: bool = True) -> Iterator[collections.Counter[str]]:
        """Count inside the block (from zero unless ``reset=False``); yields the counter."""
        if reset:
            self.calls = collections.Counter()
        self.active = True
        try:
            yield self.calls
        finally:
            self.active = False
