"""Object storage: one way to read and write a local folder or an `s3://bucket/prefix`, through fsspec.

Every part of the platform that touches stored data (ingest, the data stream, checkpoints, evaluation
results) goes through these helpers, so a local path and an S3 URI behave the same. Writes are
atomic: a reader sees the old object or the whole new one, never a partial file (local: temp name
then rename; S3: one PUT, which S3 only makes visible once complete).
"""
from __future__ import annotations

import dataclasses
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


@dataclass
class StorageConfig:
    """How to reach S3-compatible storage. Unset values fall back to the standard AWS environment."""

    endpoint_url: str | None = None  # e.g. http://127.0.0.1:9000; None = $AWS_ENDPOINT_URL, else AWS itself
    region: str | None = None  # None = $AWS_REGION / $AWS_DEFAULT_REGION
    key: str | None = None  # access key id; None = $AWS_ACCESS_KEY_ID (or the AWS credential chain)
    secret: str | None = None  # secret access key; None = $AWS_SECRET_ACCESS_KEY

    def validate(self) -> None:
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
        # fsspec caches instances by these arguments, so repeated calls are cheap.
        fs = s3fs.S3FileSystem(key=cfg.key, secret=cfg.secret, client_kwargs=client_kwargs)
        return fs, uri[len("s3://"):]
    from fsspec.implementations.local import LocalFileSystem

    return LocalFileSystem(), os.path.abspath(uri)


def exists(uri: str, cfg: StorageConfig | None = None) -> bool:
    fs, path = filesystem(uri, cfg)
    if is_s3(uri):
        fs.invalidate_cache(path)  # another process may have written it since we last looked
    return fs.exists(path)


def read_bytes(uri: str, cfg: StorageConfig | None = None) -> bytes:
    fs, path = filesystem(uri, cfg)
    return fs.cat_file(path)


def open_read(uri: str, cfg: StorageConfig | None = None) -> IO[bytes]:
    fs, path = filesystem(uri, cfg)
    return fs.open(path, "rb")


def write_bytes_atomic(uri: str, data: bytes, cfg: StorageConfig | None = None) -> None:
    """Write a whole object so that readers never see it half-written."""
    fs, path = filesystem(uri, cfg)
    if is_s3(uri):
        fs.pipe_file(path, data)  # a single PUT (or a multipart upload, completed as one)
        fs.invalidate_cache(path)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
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
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


def remove_tree(uri: str, cfg: StorageConfig | None = None) -> None:
    fs, path = filesystem(uri, cfg)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def list_files(uri: str, cfg: StorageConfig | None = None) -> list[str]:
    """Every file under a folder/prefix, as URIs of the same kind as `uri`, sorted."""
    fs, path = filesystem(uri, cfg)
    if is_s3(uri):
        fs.invalidate_cache(path)
    if not fs.exists(path):
        return []
    found = fs.find(path)
    return sorted(f"s3://{p}" if is_s3(uri) else p for p in found)
