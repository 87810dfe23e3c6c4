"""Concurrent multipart upload of one streamed S3 object.

s3fs streams a file's parts one after another; this writer cuts the stream into ``part_size`` parts and uploads up
to ``concurrency`` of them at once, holding at most ``part_size * (concurrency + 1)`` bytes. An object smaller than one
part is sent with a single PUT. On failure the multipart upload is aborted, so no partial object ever appears.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class S3ConcurrentWriter:
    """A write-only binary file object over an S3 multipart upload (for pyarrow's writers and plain ``write``)."""

    def __init__(self, fs: Any, path: str, part_size: int, concurrency: int):
        self.fs = fs
        self.bucket, self.key, _ = fs.split_path(path)
        self.part_size = part_size
        self.concurrency = max(1, concurrency)
        self.buffer = bytearray()
        self.position = 0
        self.closed = False
        self.upload_id: str | None = None
        self.parts: list[Future[dict[str, Any]]] = []
        self.pool: ThreadPoolExecutor | None = None

    # --- file object protocol used by pyarrow -------------------------------------------------------------------
    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.buffer += data
        self.position += len(data)
        while len(self.buffer) >= self.part_size:
            # Hand the buffer itself to the upload (truncated in place) and copy only the remainder: one part costs
            # no copy beyond the bytes that arrived after it.
            chunk, self.buffer = self.buffer, self.buffer[self.part_size :]
            del chunk[self.part_size :]
            self._submit(chunk)
        return len(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self.upload_id is None:
                self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer))
                return
            if self.buffer:
                self._submit(bytes(self.buffer))
            parts = [future.result() for future in self.parts]
            self.fs.call_s3(
                "complete_multipart_upload",
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            self.abort()
            raise
        finally:
            self.buffer = bytearray()
            if self.pool is not None:
                self.pool.shutdown(wait=True)
            self.fs.invalidate_cache(f"{self.bucket}/{self.key}")

    def abort(self) -> None:
        """Abandon the upload: the object never appears."""
        self.closed = True
        if self.upload_id is not None:
            for future in self.parts:
                future.cancel()
            try:
                self.fs.call_s3("abort_multipart_upload", Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
            except Exception:  # the staging folder is discarded anyway
                pass
            self.upload_id = None

    def __enter__(self) -> S3ConcurrentWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- uploads ------------------------------------------------------------------------------------------------
    def _submit(self, chunk: bytes | bytearray) -> None:
        if self.upload_id is None:
            self.upload_id = self.fs.call_s3("create_multipart_upload", Bucket=self.bucket, Key=self.key)["UploadId"]
            self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="upload")
        in_flight = [f for f in self.parts if not f.done()]
        if len(in_flight) >= self.concurrency:
            in_flight[0].result()  # bound memory: wait for the oldest part in flight
        for done in (f for f in self.parts if f.done()):
            done.result()  # surface a failed part at once
        number = len(self.parts) + 1
        assert self.pool is not None
        self.parts.append(self.pool.submit(self._upload, number, chunk))

    def _upload(self, number: int, chunk: bytes | bytearray) -> dict[str, Any]:
        response = self.fs.call_s3(
            "upload_part", Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=chunk
        )
        return {"PartNumber": number, "ETag": response["ETag"]}


def open_for_upload(fs: Any, path: str, part_size: int, concurrency: int) -> Any:
    """Open ``path`` for streaming writes: concurrent multipart on S3, the filesystem's own writer elsewhere."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if "s3" in protocols and concurrency > 1:
        return S3ConcurrentWriter(fs, path, part_size, concurrency)
    return fs.open(path, "wb", block_size=part_size)
