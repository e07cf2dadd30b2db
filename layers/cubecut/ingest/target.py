"""Where a cube is assembled: an S3 multipart upload, or a local file.

Both follow one protocol so plan/block/finalize do not care which: ``begin`` opens an
upload, ``write_part`` is idempotent (re-sending a part replaces it), ``list_parts`` says
what arrived, ``complete`` makes the cube visible in one step and ``abort`` leaves
nothing behind. Until ``complete`` no reader can see a partial cube: S3 shows nothing
before CompleteMultipartUpload, and the local file is built under a hidden temporary
name and renamed into place.

``complete`` is conditional (docs/architecture.md, "Consistency model"): it succeeds only
if the object at the key is still the version the plan started from (``replaces``, an
ETag; None = no object), with S3's ``If-Match`` / ``If-None-Match: *`` on
CompleteMultipartUpload, or the same check under a file lock locally. Otherwise it raises
ConcurrentWriteError and the cube at the key is left as the other writer made it.

Every cube an S3 upload makes carries user metadata naming its plan (``cubecut-plan``)
and the version it replaced (``cubecut-replaces``), so a retried Finalize can prove an
object is its own and an audit can check that the versions form one line.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import (ConcurrentWriteError, ObjectNotFoundError, StorageError, TargetNotWritableError,
                      UploadGoneError)
from ..storage import Location, check_local_precondition, file_etag, local_write_lock, s3_client, s3_errors

#: S3 user-metadata keys on every cube cubecut writes (``x-amz-meta-...``).
PLAN_KEY = "cubecut-plan"
REPLACES_KEY = "cubecut-replaces"
#: ``cubecut-replaces`` of a cube written where there was none.
NO_VERSION = "none"


def version_metadata(plan_id: str, replaces: str | None) -> dict[str, str]:
    """The user metadata binding a cube object to its plan and predecessor."""
    return {PLAN_KEY: plan_id, REPLACES_KEY: (replaces or NO_VERSION).strip('"')}


@dataclass(frozen=True)
class PartReceipt:
    """A part that arrived: its number (1-based), size in bytes, and ETag (S3 only)."""

    part: int
    size: int
    etag: str | None = None


class CubeTarget(Protocol):
    location: Location

    def begin(self, metadata: dict[str, str] | None = None) -> str: ...
    def write_part(self, upload_id: str, part: int, offset: int, data: bytes | bytearray) -> PartReceipt: ...
    def list_parts(self, upload_id: str) -> list[PartReceipt]: ...
    def complete(self, upload_id: str, parts: list[PartReceipt], replaces: str | None) -> str | None: ...
    def abort(self, upload_id: str) -> None: ...


class S3Target:
    """A cube assembled by an S3 multipart upload."""

    def __init__(self, location: Location, total_bytes: int) -> None:
        self.location = location
        self.total_bytes = total_bytes
        self._s3 = s3_client()

    def _call(self, what: str, method: str, **kwargs):
        with s3_errors(f"{what} {self.location.url}"):
            return getattr(self._s3, method)(Bucket=self.location.bucket, Key=self.location.key, **kwargs)

    def begin(self, metadata: dict[str, str] | None = None) -> str:
        try:
            response = self._call("start upload of", "create_multipart_upload", ContentType="application/fits",
                                  Metadata=metadata or {})
        except StorageError as exc:
            raise TargetNotWritableError(f"cannot write the cube: {exc}") from None
        return response["UploadId"]

    def write_part(self, upload_id: str, part: int, offset: int, data: bytes | bytearray) -> PartReceipt:
        try:
            response = self._call(f"upload part {part} of", "upload_part", UploadId=upload_id, PartNumber=part,
                                  Body=data)
        except ObjectNotFoundError:
            raise UploadGoneError(f"{self.location.url}: upload {upload_id} is gone (aborted by the janitor, the "
                                  "bucket's lifecycle rule or by hand): nothing was written") from None
        return PartReceipt(part, len(data), response["ETag"])

    def list_parts(self, upload_id: str) -> list[PartReceipt]:
        receipts: list[PartReceipt] = []
        marker = 0
        while True:
            response = self._call("list parts of", "list_parts", UploadId=upload_id, PartNumberMarker=marker)
            receipts += [PartReceipt(p["PartNumber"], p["Size"], p["ETag"]) for p in response.get("Parts", [])]
            if not response.get("IsTruncated"):
                return sorted(receipts, key=lambda r: r.part)
            marker = response["NextPartNumberMarker"]

    def complete(self, upload_id: str, parts: list[PartReceipt], replaces: str | None) -> str | None:
        """Complete the upload if the key still holds ``replaces`` (an ETag; None: nothing)."""
        ordered = sorted(parts, key=lambda r: r.part)
        condition = {"IfMatch": replaces} if replaces else {"IfNoneMatch": "*"}
        # NoSuchKey with If-Match: the key is now empty (NoSuchUpload stays ObjectNotFoundError).
        deleted = ConcurrentWriteError(f"{self.location.url}: the cube {replaces} this ingest replaces "
                                       "was deleted meanwhile; nothing was written") if replaces else None
        try:
            with s3_errors(f"complete upload of {self.location.url}", missing_key=deleted):
                response = self._s3.complete_multipart_upload(
                    Bucket=self.location.bucket, Key=self.location.key, UploadId=upload_id,
                    MultipartUpload={"Parts": [{"PartNumber": p.part, "ETag": p.etag} for p in ordered]}, **condition)
        except ConcurrentWriteError as exc:
            if exc is deleted:
                raise
            raise ConcurrentWriteError(_lost(self.location.url, replaces)) from None
        return response.get("ETag")

    def abort(self, upload_id: str) -> None:
        try:
            self._call("abort upload of", "abort_multipart_upload", UploadId=upload_id)
        except ObjectNotFoundError:
            pass


class FileTarget:
    """A cube assembled in a hidden temporary file beside the destination, then renamed.

    Parts are written at their offsets with ``os.pwrite``; a small JSON receipt per part
    records what arrived, so ``list_parts`` works across processes like S3's ListParts.
    """

    def __init__(self, location: Location, total_bytes: int) -> None:
        self.location = location
        self.total_bytes = total_bytes
        self.path = Path(location.key)

    def _partial(self, upload_id: str) -> Path:
        return self.path.with_name(f".{self.path.name}.{upload_id}.partial")

    def _receipts(self, upload_id: str) -> Path:
        return self.path.with_name(f".{self.path.name}.{upload_id}.parts")

    def begin(self, metadata: dict[str, str] | None = None) -> str:
        upload_id = os.urandom(8).hex()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._partial(upload_id), "wb") as handle:
                handle.truncate(self.total_bytes)
            self._receipts(upload_id).mkdir()
        except OSError as exc:
            raise TargetNotWritableError(f"{self.path}: cannot write: {exc.strerror or exc}") from None
        return upload_id

    def write_part(self, upload_id: str, part: int, offset: int, data: bytes | bytearray) -> PartReceipt:
        partial = self._partial(upload_id)
        if not partial.exists():
            raise UploadGoneError(f"{self.path}: upload {upload_id} does not exist")
        fd = os.open(partial, os.O_WRONLY)
        try:
            view = memoryview(data)
            written = 0
            while written < len(view):
                written += os.pwrite(fd, view[written:], offset + written)
        finally:
            os.close(fd)
        receipt = PartReceipt(part, len(data))
        (self._receipts(upload_id) / f"{part:05d}.json").write_text(json.dumps(receipt.__dict__))
        return receipt

    def list_parts(self, upload_id: str) -> list[PartReceipt]:
        folder = self._receipts(upload_id)
        if not folder.is_dir():
            raise ObjectNotFoundError(f"{self.path}: upload {upload_id} does not exist")
        return [PartReceipt(**json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]

    def complete(self, upload_id: str, parts: list[PartReceipt], replaces: str | None) -> str | None:
        """Rename the file into place if the path still holds ``replaces`` (a
        :func:`~cubecut.storage.file_etag`; None: nothing), under the path's write lock."""
        partial = self._partial(upload_id)
        if not partial.exists():
            raise ObjectNotFoundError(f"{self.path}: upload {upload_id} does not exist")
        with local_write_lock(self.path):
            try:
                check_local_precondition(self.path, replaces, replaces is None)
            except ConcurrentWriteError:
                raise ConcurrentWriteError(_lost(str(self.path), replaces)) from None
            os.replace(partial, self.path)
            etag = file_etag(self.path.stat())
        self._remove_receipts(upload_id)
        return etag

    def abort(self, upload_id: str) -> None:
        self._partial(upload_id).unlink(missing_ok=True)
        self._remove_receipts(upload_id)

    def _remove_receipts(self, upload_id: str) -> None:
        folder = self._receipts(upload_id)
        if folder.is_dir():
            for item in folder.iterdir():
                item.unlink()
            folder.rmdir()


def _lost(where: str, replaces: str | None) -> str:
    started = f"version {replaces}" if replaces else "no cube"
    return (f"{where}: another ingest or update replaced the cube first (this one started from {started}); "
            "its upload was not completed and the other writer's cube stays")


def make_target(location: Location, total_bytes: int) -> CubeTarget:
    """The target for ``location``: S3 multipart for ``s3://``, a local file otherwise."""
    return S3Target(location, total_bytes) if location.is_s3 else FileTarget(location, total_bytes)
