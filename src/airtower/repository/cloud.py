"""Cloud model repositories: ``s3://bucket/path`` and S3-compatible stores
(``s3://http[s]://host:port/bucket/path``), as tritonserver names them.

A cloud repository is localised: every object under its prefix is downloaded into a local folder
(owned by the ``CloudRepository`` and removed with it), which is then scanned like any local
repository. Each file gets its object's last-modified time, so a poll that downloads the same
objects again sees the same fingerprints. Credentials come from the environment, as boto3 reads
them (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, profiles...).
boto3 is an optional dependency (the ``s3`` extra); without it an s3:// path is a clear error.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from airtower.errors import InvalidArgumentError, UnavailableError


@dataclass(frozen=True, slots=True)
class S3Location:
    endpoint: str | None  # None: AWS itself
    bucket: str
    prefix: str  # no leading or trailing "/"


def is_cloud(path: str) -> bool:
    return path.startswith("s3://")


def parse_s3(path: str) -> S3Location:
    """``s3://[http[s]://host:port/]bucket[/prefix]``.

    Raises:
        InvalidArgumentError: no bucket.
    """
    rest = path.removeprefix("s3://")
    endpoint: str | None = None
    for scheme in ("https://", "http://"):
        if rest.startswith(scheme):
            host, _, rest = rest.removeprefix(scheme).partition("/")
            endpoint = scheme + host
            break
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise InvalidArgumentError(f"invalid S3 path '{path}': no bucket")
    return S3Location(endpoint, bucket, prefix.strip("/"))


class CloudRepository:
    """One s3:// repository and its local copy."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.location = parse_s3(path)
        self._workdir = tempfile.mkdtemp(prefix="airtower-s3-")
        self.local = Path(self._workdir) / (PurePosixPath(self.location.prefix).name or self.location.bucket)

    def sync(self) -> Path:
        """Download the repository into a fresh copy; returns its path.

        Raises:
            UnavailableError: boto3 is missing, or the store can't be read.
        """
        client = _client(self.location)
        staging = Path(tempfile.mkdtemp(prefix="sync-", dir=self._workdir))
        prefix = f"{self.location.prefix}/" if self.location.prefix else ""
        try:
            paginator = client.get_paginator("list_objects_v2")
            found = False
            for page in paginator.paginate(Bucket=self.location.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    key: str = item["Key"]
                    relative = key[len(prefix) :]
                    if not relative or relative.endswith("/"):
                        continue  # the prefix itself, or a folder marker
                    found = True
                    target = staging / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    client.download_file(self.location.bucket, key, str(target))
                    stamp = item["LastModified"].timestamp()
                    os.utime(target, (stamp, stamp))
        except Exception as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise UnavailableError(f"failed to read model repository {self.path}: {exc}") from exc
        if not found:
            shutil.rmtree(staging, ignore_errors=True)
            raise InvalidArgumentError(f"failed to stat file {self.path}")
        shutil.rmtree(self.local, ignore_errors=True)
        staging.rename(self.local)
        return self.local

    def close(self) -> None:
        shutil.rmtree(self._workdir, ignore_errors=True)


def _client(location: S3Location) -> Any:
    try:
        import boto3  # type: ignore[import-untyped]
    except ImportError as exc:
        raise UnavailableError(
            "s3:// model repositories need boto3: install airtower with the 's3' extra (pip install 'airtower[s3]')"
        ) from exc
    return boto3.client("s3", endpoint_url=location.endpoint)
