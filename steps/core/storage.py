"""One storage layer for local paths and ``s3://`` URIs: read, list, delete, atomic put, conditional create, hashing.

One boto3 client and one pyarrow S3 filesystem per endpoint. The endpoint is ``METAFLOW_S3_ENDPOINT_URL``, else
``AWS_ENDPOINT_URL``, else AWS itself (the tests point it at a local S3-compatible server); a caller that knows better
(the registry reads Metaflow's configuration) passes ``endpoint``.

Writes are atomic: locally a temporary file in the same folder, fsync, then a rename (``put_bytes``) or a hard link
that fails when the name exists (``put_new``); on S3 one PUT, conditional with ``If-None-Match: *`` for ``put_new``
and with ``If-Match: <ETag>`` for ``replace_if`` (a compare-and-swap; locally under a lock file).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

from steps.core.errors import UserError

_HASH_CHUNK = 1 << 20
DEFAULT = object()  # "the endpoint from the environment"


def is_s3(uri: str) -> bool:
    """True for ``s3://`` URIs."""
    return uri.startswith("s3://")


def join_uri(root: str, *parts: str) -> str:
    """``root/part/...`` for a local path or an ``s3://`` prefix."""
    if is_s3(root):
        return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(root).joinpath(*parts))


def absolute(uri: str) -> str:
    """``uri`` unchanged for s3://, else the absolute local path."""
    return uri if is_s3(uri) else str(Path(uri).expanduser().resolve())


def split_s3(uri: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://`` URI."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def endpoint_from_env() -> str | None:
    """The S3 endpoint override (a local server in tests): METAFLOW_S3_ENDPOINT_URL, else AWS_ENDPOINT_URL."""
    return os.environ.get("METAFLOW_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None


@lru_cache(maxsize=4)
def _s3_client(endpoint: str | None) -> Any:
    """A boto3 S3 client for ``endpoint`` (None: AWS)."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint)


def s3_client(endpoint: Any = DEFAULT) -> Any:
    """The boto3 S3 client for ``endpoint`` (default: the one the environment names)."""
    return _s3_client(endpoint_from_env() if endpoint is DEFAULT else endpoint)


@lru_cache(maxsize=4)
def _arrow_s3(endpoint: str | None, region: str | None) -> Any:
    """A pyarrow S3 filesystem for ``endpoint`` (None: AWS)."""
    from pyarrow import fs

    kwargs: dict[str, Any] = {"region": region} if region else {}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme)
    return fs.S3FileSystem(**kwargs)


def arrow_s3() -> Any:
    """The pyarrow S3 filesystem for the configured endpoint and region."""
    return _arrow_s3(endpoint_from_env(), os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"))


def list_files(directory: str, endpoint: Any = DEFAULT) -> list[str]:
    """Names of the files directly under ``directory`` (local folder or s3 prefix), sorted; [] when it is absent."""
    if is_s3(directory):
        bucket, key = split_s3(directory.rstrip("/") + "/")
        names: list[str] = []
        pages = s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key, Delimiter="/")
        for page in pages:
            names.extend(o["Key"][len(key):] for o in page.get("Contents", []))
        return sorted(names)
    path = Path(directory)
    return sorted(p.name for p in path.iterdir() if p.is_file()) if path.is_dir() else []


def delete(uri: str, endpoint: Any = DEFAULT) -> None:
    """Delete one file or object (missing is fine)."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        s3_client(endpoint).delete_object(Bucket=bucket, Key=key)
    else:
        Path(uri).unlink(missing_ok=True)


def exists(uri: str, endpoint: Any = DEFAULT) -> bool:
    """Whether a file or object is there."""
    if not is_s3(uri):
        return Path(uri).is_file()
    bucket, key = split_s3(uri)
    client = s3_client(endpoint)
    try:
        client.head_object(Bucket=bucket, Key=key)
    except client.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def read_bytes(uri: str, endpoint: Any = DEFAULT) -> bytes | None:
    """The bytes of a file or object, or None when it does not exist."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        client = s3_client(endpoint)
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
    path = Path(uri)
    return path.read_bytes() if path.is_file() else None


def read_version(uri: str, endpoint: Any = DEFAULT) -> tuple[bytes, str] | None:
    """The bytes of a file or object and the version :func:`replace_if` compares (S3: its ETag; locally: the sha256
    of the bytes), or None when it does not exist."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        client = s3_client(endpoint)
        try:
            found = client.get_object(Bucket=bucket, Key=key)
        except client.exceptions.NoSuchKey:
            return None
        return found["Body"].read(), found["ETag"]
    body = read_bytes(uri)
    return None if body is None else (body, hashlib.sha256(body).hexdigest())


class WriteConflict(RuntimeError):
    """A conditional write found the file or object changed since the version it was given was read."""


def _precondition_failed(err: Any) -> bool:
    """True when an S3 ClientError is a failed ``If-Match`` / ``If-None-Match`` (or a conflicting conditional PUT)."""
    return err.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict")


def replace_if(uri: str, body: bytes, version: str | None, endpoint: Any = DEFAULT) -> None:
    """Write ``body`` atomically only while ``uri`` still holds ``version`` (:func:`read_version`; None: only while
    nothing is there); WriteConflict otherwise, and nothing is written.

    On S3 one PUT with ``If-Match: <ETag>`` (``If-None-Match: *`` for None): S3 compares and writes at once, so a
    writer that saved in between, even a moment before, is never overwritten. Locally the comparison and the rename
    happen under an exclusive ``flock`` on ``.<name>.lock`` beside the file, which every ``replace_if`` of it takes.
    """
    if is_s3(uri):
        bucket, key = split_s3(uri)
        client = s3_client(endpoint)
        condition = {"IfMatch": version} if version is not None else {"IfNoneMatch": "*"}
        try:
            client.put_object(Bucket=bucket, Key=key, Body=body, **condition)
        except client.exceptions.ClientError as err:  # If-Match on a removed object: NoSuchKey
            if _precondition_failed(err) or err.response.get("Error", {}).get("Code") == "NoSuchKey":
                raise WriteConflict(f"{uri} changed since version {version} was read") from err
            raise
        return
    path = Path(uri)
    tmp = _write_temporary(path, body)
    try:
        with open(path.with_name(f".{path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            now = read_version(uri)
            if (now[1] if now is not None else None) != version:
                raise WriteConflict(f"{uri} changed since version {version} was read")
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_temporary(path: Path, body: bytes | Path) -> Path:
    """``body`` (bytes, or a local file copied in chunks) in a new temporary file beside ``path``, flushed to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    with open(tmp, "wb") as fh:
        if isinstance(body, bytes):
            fh.write(body)
        else:
            with open(body, "rb") as src:
                shutil.copyfileobj(src, fh, _HASH_CHUNK)
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


def put_bytes(uri: str, body: bytes, endpoint: Any = DEFAULT) -> None:
    """Write ``body`` atomically, replacing what is there: tmp file + rename locally, one PUT on S3."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        s3_client(endpoint).put_object(Bucket=bucket, Key=key, Body=body)
        return
    path = Path(uri)
    os.replace(_write_temporary(path, body), path)


def put_new(uri: str, body: bytes | Path, endpoint: Any = DEFAULT) -> None:
    """Create ``uri`` with ``body`` (bytes, or a local file streamed) only when nothing is there yet, atomically;
    FileExistsError otherwise.

    Locally the complete temporary file is hard-linked to the final name (``link`` fails when the name exists, so two
    writers cannot both succeed and a reader never sees a partial file); on S3 one PUT with ``If-None-Match: *``.
    """
    if is_s3(uri):
        bucket, key = split_s3(uri)
        client = s3_client(endpoint)
        with contextlib.ExitStack() as stack:
            payload = body if isinstance(body, bytes) else stack.enter_context(open(body, "rb"))
            try:
                client.put_object(Bucket=bucket, Key=key, Body=payload, IfNoneMatch="*")
            except client.exceptions.ClientError as err:
                if _precondition_failed(err):
                    raise FileExistsError(f"{uri} already exists") from err
                raise
        return
    path = Path(uri)
    tmp = _write_temporary(path, body)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{uri} already exists") from None
    finally:
        tmp.unlink(missing_ok=True)


def staging_path(uri: str, tmp_dir: str | None = None) -> Path:
    """A new local temporary path to build ``uri`` in: beside it for a local ``uri``, in ``tmp_dir`` for S3."""
    if is_s3(uri):
        fd, tmp = tempfile.mkstemp(prefix=".part-", suffix=".tmp", dir=tmp_dir)
        os.close(fd)
        return Path(tmp)
    final = Path(uri)
    final.parent.mkdir(parents=True, exist_ok=True)
    return final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex}")


def publish_file(tmp: Path, uri: str, endpoint: Any = DEFAULT) -> None:
    """Move the finished local file ``tmp`` to ``uri`` atomically: fsync + rename locally, one PUT on S3."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        with open(tmp, "rb") as fh:
            s3_client(endpoint).put_object(Bucket=bucket, Key=key, Body=fh)  # the object appears whole or not at all
        tmp.unlink()
        return
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    Path(uri).parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, uri)


def check_writable(uri: str, endpoint: Any = DEFAULT) -> None:
    """UserError unless ``uri`` is a folder that is (or can be made) writable, or an ``s3://`` prefix this process can
    write to; nothing is left behind (a missing folder is probed through its nearest existing parent)."""
    if not is_s3(uri):
        path = Path(uri).absolute()
        if path.exists() and not path.is_dir():
            raise UserError(f"output {uri} is a file, not a folder: give a folder (it is made when missing)")
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir():
            raise UserError(f"output {uri} cannot be made: {existing} is a file")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UserError(f"output {uri} is not writable: no write permission on {existing}")
        return
    probe = join_uri(uri, f".write-probe-{uuid.uuid4().hex}")
    try:
        put_bytes(probe, b"", endpoint)
        delete(probe, endpoint)
    except Exception as err:  # botocore ClientError (AccessDenied, NoSuchBucket), endpoint errors, ...
        raise UserError(f"output {uri} is not writable: {type(err).__name__}: {err}") from None


def sha256_uri(uri: str, endpoint: Any = DEFAULT) -> tuple[str, int] | None:
    """(sha256 hex digest, size in bytes) of a file or object as storage holds it now, streamed; None when absent."""
    if not is_s3(uri):
        path = Path(uri)
        return (sha256_file(path), path.stat().st_size) if path.is_file() else None
    bucket, key = split_s3(uri)
    client = s3_client(endpoint)
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
    except client.exceptions.NoSuchKey:
        return None
    digest, size = hashlib.sha256(), 0
    for chunk in body.iter_chunks(_HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def sha256_file(path: str | Path) -> str:
    """sha256 hex digest of a local file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
