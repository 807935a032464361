"""Object storage: one way to read and write a local folder or an `s3://bucket/prefix`, through fsspec.

Every part of the platform that touches stored data (ingest, the data stream, checkpoints, evaluation
results) goes through these helpers, so a local path and an S3 URI behave the same. Writes are
atomic: a reader sees the old object or the whole new one, never a partial file (local: temp name
then rename; S3: one PUT, which S3 only makes visible once complete).

S3 calls survive an outage: a connection error or throttling is retried with backoff for
`storage.retry_seconds`, then fails as one `StorageError` naming the endpoint, the bucket and the operation.
A bucket that does not exist is a `NoSuchBucketError` (bad input: the URI or the setup is wrong).
`arrow_filesystem` gives libraries that write through pyarrow (Ray Train's checkpoints) the same
retries and the same whole-object writes.
"""
from __future__ import annotations

import dataclasses
import errno
import io
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, TypeVar

from pyarrow.fs import FSSpecHandler, PyFileSystem

from .errors import BadInputError, ServiceError

T = TypeVar("T")
# S3 error codes that mean "try again later", not "this request is wrong"
_TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
                    "ServiceUnavailable", "InternalError", "RequestTimeout", "500", "502", "503", "504"}
_TRANSIENT_NAMES = {"EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError",
                    "ClientConnectorError", "ServerDisconnectedError", "ClientOSError", "ClientPayloadError",
                    "FSTimeoutError", "IncompleteRead", "ResponseStreamingError"}


class StorageError(ServiceError):
    """Object storage did not answer (or kept refusing) for `storage.retry_seconds`."""


class NoSuchBucketError(BadInputError):
    """The bucket of an s3:// URI does not exist at the endpoint."""


@dataclass
class StorageConfig:
    """How to reach S3-compatible storage. Unset values fall back to the standard AWS environment."""

    endpoint_url: str | None = None  # e.g. http://127.0.0.1:9000; None = $AWS_ENDPOINT_URL, else AWS itself
    region: str | None = None  # None = $AWS_REGION / $AWS_DEFAULT_REGION
    key: str | None = None  # access key id; None = $AWS_ACCESS_KEY_ID (or the AWS credential chain)
    secret: str | None = None  # secret access key; None = $AWS_SECRET_ACCESS_KEY
    retry_seconds: float = 30.0  # keep retrying a connection error or throttling this long, then fail naming it

    def validate(self) -> None:
        if not self.retry_seconds >= 0:
            raise ValueError(f"storage.retry_seconds: {self.retry_seconds!r} must be a number of seconds >= 0")
        if (self.key is None) != (self.secret is None):
            raise ValueError("storage.key and storage.secret must be set together (or both left to the environment)")
        if self.endpoint_url is not None and not self.endpoint_url.startswith(("http://", "https://")):
            raise ValueError(f"storage.endpoint_url: {self.endpoint_url!r} must start with http:// or https://")

    def resolved(self) -> "StorageConfig":
        """A copy with the environment fallbacks filled in, so Ray workers (whose environment may differ
        from the driver's) reach the same endpoint with the same credentials."""
        env = os.environ
        return dataclasses.replace(
            self,
            endpoint_url=self.endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"),
            region=self.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
            key=self.key or env.get("AWS_ACCESS_KEY_ID"),
            secret=self.secret or env.get("AWS_SECRET_ACCESS_KEY"),
        )


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a local path or URI with '/' (S3 keys never use os.sep)."""
    out = uri.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def parent(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[0]


def normalize(uri: str) -> str:
    """Local paths become absolute (a manifest must stay valid from any working directory)."""
    return uri.rstrip("/") if is_s3(uri) else os.path.abspath(os.path.expanduser(uri))


def filesystem(uri: str, cfg: StorageConfig | None = None) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for a local path or s3:// URI."""
    if is_s3(uri):
        import s3fs

        cfg = (cfg or StorageConfig()).resolved()
        client_kwargs: dict[str, Any] = {}
        if cfg.endpoint_url:
            client_kwargs["endpoint_url"] = cfg.endpoint_url
        if cfg.region:
            client_kwargs["region_name"] = cfg.region
        # fsspec caches instances by these arguments, so repeated calls are cheap. botocore makes one attempt
        # per call: `_s3_call` owns the retries, so an outage ends a command after storage.retry_seconds, not
        # after that plus botocore's own backoff (up to 5 attempts, seconds each, inside every one of ours)
        fs = s3fs.S3FileSystem(key=cfg.key, secret=cfg.secret, client_kwargs=client_kwargs,
                               config_kwargs={"retries": {"total_max_attempts": 1, "mode": "standard"}})
        return fs, uri[len("s3://"):]
    from fsspec.implementations.local import LocalFileSystem

    return LocalFileSystem(), os.path.abspath(uri)


def _error_chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code")) if isinstance(response, dict) else None


def _is_transient(exc: BaseException) -> bool:
    for link in _error_chain(exc):
        if type(link).__name__ in _TRANSIENT_NAMES or isinstance(link, (ConnectionError, TimeoutError)):
            return True
        if _error_code(link) in _TRANSIENT_CODES:
            return True
    return False


def _is_missing_bucket(exc: BaseException) -> bool:
    return any(_error_code(link) == "NoSuchBucket" or type(link).__name__ == "NoSuchBucket"
               for link in _error_chain(exc))


def _missing_bucket(operation: str, uri: str, cfg: StorageConfig | None) -> NoSuchBucketError:
    bucket = uri[len("s3://"):].split("/", 1)[0]
    endpoint = (cfg or StorageConfig()).resolved().endpoint_url or "AWS S3"
    return NoSuchBucketError(f"bucket {bucket!r} does not exist at {endpoint} ({operation} {uri}): create it, "
                             f"or fix the bucket name in the URI")


def _bucket_is_missing(fs, bucket: str) -> bool:
    """Whether S3 says the bucket does not exist. Not `fs.exists(bucket)`: s3fs answers False there for an
    endpoint it cannot reach as well, which turned an outage between two calls into a missing bucket
    (an error that is not retried). A HEAD raises instead, so `_s3_call` retries a connection error."""
    try:
        fs.call_s3("head_bucket", Bucket=bucket)
    except FileNotFoundError:
        return True
    except PermissionError:
        return False  # it is there; these credentials may not list it
    return False


def _s3_call(operation: str, uri: str, cfg: StorageConfig | None, call: Callable[[], T]) -> T:
    """call(), retried with backoff (0.5 s doubling to 4 s) on connection errors and throttling until
    cfg.retry_seconds have passed (one last attempt at that moment); a missing bucket or the end of the
    retries raise one error that names them."""
    cfg = (cfg or StorageConfig()).resolved()
    bucket = uri[len("s3://"):].split("/", 1)[0]
    endpoint = cfg.endpoint_url or "AWS S3"
    deadline = time.monotonic() + cfg.retry_seconds
    delay, attempts = 0.5, 0
    while True:
        attempts += 1
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - sorted below: missing bucket, transient, or the caller's
            if _is_missing_bucket(exc):
                raise _missing_bucket(operation, uri, cfg) from exc
            if not _is_transient(exc):
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise StorageError(f"object storage at {endpoint} (bucket {bucket!r}) did not answer: {operation} "
                                   f"{uri} failed {attempts} time(s) over {cfg.retry_seconds:g}s ({reason}); "
                                   f"check that the endpoint is up and reachable, then run the command again "
                                   f"(storage.retry_seconds waits longer)") from exc
            time.sleep(min(delay, remaining))  # the last attempt at the deadline itself
            delay = min(2 * delay, 4.0)


def exists(uri: str, cfg: StorageConfig | None = None) -> bool:
    fs, path = filesystem(uri, cfg)
    if not is_s3(uri):
        return fs.exists(path)

    def look() -> bool:
        fs.invalidate_cache(path)  # another process may have written it since we last looked
        if fs.exists(path):
            return True
        if _bucket_is_missing(fs, path.split("/", 1)[0]):  # s3fs answers False for it: name it instead
            raise _missing_bucket("looking for", uri, cfg)
        return False

    return _s3_call("looking for", uri, cfg, look)


def read_bytes(uri: str, cfg: StorageConfig | None = None) -> bytes:
    fs, path = filesystem(uri, cfg)
    if not is_s3(uri):
        return fs.cat_file(path)
    def get() -> bytes:
        try:
            return fs.cat_file(path)
        except FileNotFoundError as exc:
            if _is_missing_bucket(exc):
                raise
            raise FileNotFoundError(errno.ENOENT, "no such object", uri) from exc

    return _s3_call("reading", uri, cfg, get)


def open_read(uri: str, cfg: StorageConfig | None = None) -> IO[bytes]:
    """A file object over the whole object (S3: read in one retried call, so no read fails half-way)."""
    fs, path = filesystem(uri, cfg)
    if not is_s3(uri):
        return fs.open(path, "rb")
    return io.BytesIO(read_bytes(uri, cfg))


def write_bytes_atomic(uri: str, data: bytes, cfg: StorageConfig | None = None) -> None:
    """Write a whole object so that readers never see it half-written."""
    def write_local(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    # a single PUT (or a multipart upload, completed as one)
    _write_whole(uri, cfg, lambda fs, path: fs.pipe_file(path, data), write_local)


def upload_file(local_path: str, uri: str, cfg: StorageConfig | None = None) -> None:
    """Copy a local file to a path or URI whole, never seen half-written: S3, one retried put (a multipart
    upload that fails part-way is aborted, and S3 shows an object only once its upload completes);
    local, a temp name then a rename."""
    _write_whole(uri, cfg, lambda fs, path: fs.put_file(local_path, path),
                 lambda tmp: shutil.copyfile(local_path, tmp))


def _write_whole(uri: str, cfg: StorageConfig | None, put_s3, write_local) -> None:
    """S3: `put_s3(fs, path)`, retried through an outage (an object appears only once its upload completes);
    local: `write_local(tmp)` to a temp name beside the file, then a rename."""
    fs, path = filesystem(uri, cfg)
    if is_s3(uri):
        def put() -> None:
            put_s3(fs, path)
            fs.invalidate_cache(path)

        _s3_call("writing", uri, cfg, put)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write_local(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_file_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """A local file written as `write_bytes_atomic` writes any object (temp file beside it, then a rename);
    returns its path. For the result files, tables and plots a job leaves in a local folder."""
    write_bytes_atomic(os.fspath(path), data)
    return Path(path)


def remove(uri: str, cfg: StorageConfig | None = None) -> None:
    """Delete one object or file if present."""
    fs, path = filesystem(uri, cfg)

    def delete() -> None:
        try:
            fs.rm_file(path)
        except FileNotFoundError:
            pass

    if is_s3(uri):
        _s3_call("deleting", uri, cfg, delete)
    else:
        delete()


def remove_tree(uri: str, cfg: StorageConfig | None = None) -> None:
    fs, path = filesystem(uri, cfg)

    def delete() -> None:
        if fs.exists(path):
            fs.rm(path, recursive=True)

    if is_s3(uri):
        _s3_call("deleting", uri, cfg, delete)
    else:
        delete()


def list_files(uri: str, cfg: StorageConfig | None = None) -> list[str]:
    """Every file under a folder/prefix, as URIs of the same kind as `uri`, sorted."""
    fs, path = filesystem(uri, cfg)

    def find() -> list[str]:
        if is_s3(uri):
            fs.invalidate_cache(path)
        if not fs.exists(path):
            if is_s3(uri) and _bucket_is_missing(fs, path.split("/", 1)[0]):
                raise _missing_bucket("listing", uri, cfg)
            return []
        return sorted(f"s3://{p}" if is_s3(uri) else p for p in fs.find(path))

    return _s3_call("listing", uri, cfg, find) if is_s3(uri) else find()


# --- the same, for libraries that write through pyarrow (Ray Train) ----------------------------------------
def arrow_filesystem(uri: str, cfg: StorageConfig | None = None) -> tuple[str, PyFileSystem]:
    """(path inside it, pyarrow filesystem) for an s3:// URI, over `filesystem(uri, cfg)` with every call
    retried as ours are; for `ray.train.RunConfig(storage_path=..., storage_filesystem=...)`."""
    if not is_s3(uri):
        raise ValueError(f"arrow_filesystem is for s3:// URIs, not {uri!r}")
    fs, path = filesystem(uri, cfg)
    return path, PyFileSystem(RetryingS3Handler(fs, (cfg or StorageConfig()).resolved()))


class RetryingS3Handler(FSSpecHandler):
    """pyarrow's handler of an s3fs filesystem whose calls go through `_s3_call` (retried through an outage,
    then one `StorageError` naming the endpoint, bucket and operation). Files move whole, so an outage
    never leaves part of one behind: a file written is spooled to a local temporary file and uploaded by
    `upload_file` when closed; a file read is downloaded whole, retried, before the first byte is handed over.

    Caution: `pyarrow.fs.copy_files` ignores an error raised when it closes the files it wrote (pyarrow
    25), so a copy_files whose upload failed returns as if it had worked. Ray Train's checkpoint upload
    is such a copy: the training worker uploads its checkpoints with `upload_file` instead
    (`train.run_layout.checkpoint_uploader`). Files opened and closed directly (Ray's checkpoint
    snapshot, result files) raise as they should."""

    def __init__(self, fs, cfg: StorageConfig):
        super().__init__(fs)
        self.cfg = cfg

    def _retried(self, operation: str, path: str, call: Callable[[], T]) -> T:
        return _s3_call(operation, f"s3://{path.lstrip('/')}", self.cfg, call)

    def get_file_info(self, paths):
        return self._retried("looking for", paths[0] if paths else "", lambda: FSSpecHandler.get_file_info(self, paths))

    def get_file_info_selector(self, selector):
        return self._retried("listing", selector.base_dir, lambda: FSSpecHandler.get_file_info_selector(self, selector))

    def create_dir(self, path, recursive):
        self._retried("creating", path, lambda: FSSpecHandler.create_dir(self, path, recursive))

    def delete_dir(self, path):
        self._retried("deleting", path, lambda: FSSpecHandler.delete_dir(self, path))

    def delete_dir_contents(self, path, missing_dir_ok):
        self._retried("deleting", path, lambda: FSSpecHandler.delete_dir_contents(self, path, missing_dir_ok))

    def delete_file(self, path):
        self._retried("deleting", path, lambda: FSSpecHandler.delete_file(self, path))

    def move(self, src, dest):
        self._retried("moving", src, lambda: FSSpecHandler.move(self, src, dest))

    def copy_file(self, src, dest):
        self._retried("copying", src, lambda: FSSpecHandler.copy_file(self, src, dest))

    def open_input_stream(self, path):
        from pyarrow import PythonFile

        return PythonFile(self._download(path), mode="r")

    open_input_file = open_input_stream  # the local copy is seekable

    def open_output_stream(self, path, metadata):
        from pyarrow import PythonFile

        return PythonFile(_UploadOnClose(self, path), mode="w")

    def open_append_stream(self, path, metadata):
        raise NotImplementedError(f"s3://{path}: S3 objects cannot be appended to")

    def _download(self, path: str) -> IO[bytes]:
        """The whole object in an anonymous local temporary file, positioned at its start. One GET, so one
        version of an object that is being replaced (a ranged read through `fs.open` fails when the object
        changes under it: Ray Train rewrites its checkpoint record while others read it)."""
        def get() -> IO[bytes]:
            fd, local_path = tempfile.mkstemp(prefix="stark-download-")
            os.close(fd)
            try:
                try:
                    self.fs.get_file(path, local_path)
                except FileNotFoundError as exc:
                    raise FileNotFoundError(errno.ENOENT, "no such object", f"s3://{path}") from exc
                return open(local_path, "rb")
            finally:
                os.remove(local_path)  # an open file stays readable

        return self._retried("reading", path, get)


class _UploadOnClose(io.RawIOBase):
    """A write-only file that collects its bytes in a local temporary file and uploads them when closed."""

    def __init__(self, handler: RetryingS3Handler, path: str):
        super().__init__()
        self._handler, self._path = handler, path
        fd, self._local = tempfile.mkstemp(prefix="stark-upload-")
        self._file = os.fdopen(fd, "wb")

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return self._file.write(data)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._file.close()
            upload_file(self._local, f"s3://{self._path}", self._handler.cfg)
        finally:
            os.remove(self._local)
            super().close()

    def __del__(self) -> None:
        """Dropped without close() (its writer failed): discard the bytes, never upload part of a file."""
        if not self.closed:
            self._file.close()
            os.remove(self._local)
            super().close()
