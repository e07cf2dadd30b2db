"""Clean up after ingests that died: stale multipart uploads and staging objects.

An ingest whose process or Lambda is killed, or whose clean-up itself fails, can leave:

* an S3 multipart upload in progress: invisible to readers but its parts are billed
  (in AWS the bucket's ``AbortIncompleteMultipartUpload`` lifecycle rule removes it a day
  after it began);
* the plan's staging objects under ``{cube}.ingest/{plan id}/`` (tagged
  ``cubecut-staging=true``; in AWS the ``ExpireIngestStaging`` rule removes them after two
  days);
* for a local cube: the hidden ``.{cube}.{upload}.partial`` file (as large as the cube),
  its ``.{cube}.{upload}.parts/`` receipts and the ``.{cube}.{plan}.staging/`` folder;
* a committed cube whose index sidecar was never published (killed between the two):
  readers rebuild the index from the cube, and the janitor publishes it (whatever the age).

:func:`sweep` removes those under a prefix (or a local folder) that are older than a
threshold. Age is when the upload was initiated, and for staging the newest object of
one plan (for local files their modification time, which a running ingest keeps fresh).
**The threshold must be longer than any ingest takes**: a younger upload may belong to
an ingest still running, and is kept. Re-running :func:`sweep` is harmless.

Command line: ``cubecut janitor s3://bucket/cubes/ --older-than 1h [--dry-run]``.
"""
from __future__ import annotations

import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path


from ..cube.index import INDEX_SUFFIX
from ..cube.sidecar import describes, publish_index, read_sidecar
from ..cube.index_cache import index_from_cube
from ..errors import InputError, NotACubeError, ObjectNotFoundError, StorageError
from ..storage import Location, list_etags, s3_client, s3_errors

log = logging.getLogger(__name__)

STAGING_MARKER = ".ingest/"
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LOCAL_LEFTOVERS = (re.compile(r"^\..+\.[0-9a-f]+\.partial$"), re.compile(r"^\..+\.[0-9a-f]+\.parts$"),
                    re.compile(r"^\..+\.[0-9a-f]+\.staging$"), re.compile(r"^\..+\.\d+\.\d+\.tmp$"))


def parse_age(text: str | float | timedelta) -> timedelta:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"2d"``, ``"1w"`` or seconds → a timedelta (>= 0)."""
    if isinstance(text, timedelta):
        age = text
    elif isinstance(text, (int, float)):
        age = timedelta(seconds=float(text))
    else:
        match = _AGE.match(str(text))
        if not match:
            raise InputError(f"cannot read the age {text!r}: use e.g. 90s, 15m, 1h, 2d")
        age = timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    if age < timedelta(0):
        raise InputError("the age must not be negative")
    return age


@dataclass
class JanitorReport:
    """What :func:`sweep` found and did (``dry_run``: what it would have done)."""

    prefix: str
    older_than: timedelta
    dry_run: bool = False
    aborted_uploads: list[tuple[str, str]] = field(default_factory=list)  # (key, upload id)
    kept_uploads: int = 0
    deleted_objects: list[str] = field(default_factory=list)
    kept_staging: int = 0
    removed_paths: list[str] = field(default_factory=list)
    repaired_indexes: list[str] = field(default_factory=list)  # cube URLs

    @property
    def nothing_done(self) -> bool:
        return not (self.aborted_uploads or self.deleted_objects or self.removed_paths or self.repaired_indexes)

    def summary(self) -> str:
        verb = "would abort" if self.dry_run else "aborted"
        lines = [f"{verb} {len(self.aborted_uploads)} multipart upload(s), kept {self.kept_uploads} younger than "
                 f"{self.older_than}",
                 f"{'would delete' if self.dry_run else 'deleted'} {len(self.deleted_objects)} staging object(s), "
                 f"kept {self.kept_staging} of ingests younger than {self.older_than}"]
        if self.removed_paths:
            lines.append(f"{'would remove' if self.dry_run else 'removed'} {len(self.removed_paths)} local "
                         "leftover(s)")
        if self.repaired_indexes:
            lines.append(f"{'would rebuild' if self.dry_run else 'rebuilt'} {len(self.repaired_indexes)} stale "
                         "index sidecar(s) from their cubes")
        lines += [f"  upload {key} {upload_id}" for key, upload_id in self.aborted_uploads]
        lines += [f"  index {url}" for url in self.repaired_indexes]
        lines += [f"  object {key}" for key in self.deleted_objects]
        lines += [f"  path {path}" for path in self.removed_paths]
        return "\n".join(lines)


def sweep(prefix: str | Location, older_than: str | float | timedelta = "1d", *, dry_run: bool = False,
          now: datetime | None = None) -> JanitorReport:
    """Abort multipart uploads and delete ingest staging objects under ``prefix`` that are
    older than ``older_than``; for a local folder, remove stale hidden ingest leftovers.

    Args:
        prefix: ``s3://bucket/prefix`` (``s3://bucket`` for the whole bucket) or a folder.
        older_than: an age (see :func:`parse_age`); younger leftovers may be live, and are kept.
        dry_run: report only.
        now: the current time (tests); default: now in UTC.
    """
    location = Location.of(prefix)
    age = parse_age(older_than)
    now = now or datetime.now(timezone.utc)
    report = JanitorReport(location.url, age, dry_run)
    if location.is_s3:
        _sweep_uploads(location, now - age, report)
        _sweep_staging(location, now - age, report)
    else:
        _sweep_local(Path(location.key), now - age, report)
    _repair_sidecars(location, report)
    return report


def _repair_sidecars(location: Location, report: JanitorReport) -> None:
    """Publish the index of every cube whose sidecar does not describe it."""
    objects = list_etags(location)
    for url in sorted(objects):
        if not url.endswith(INDEX_SUFFIX) or url[: -len(INDEX_SUFFIX)] not in objects:
            continue
        cube = Location.parse(url[: -len(INDEX_SUFFIX)])
        index, _ = read_sidecar(cube)
        if describes(index, objects[cube.url]):
            continue
        if not report.dry_run:
            try:
                publish_index(cube, index_from_cube(cube))
            except (StorageError, NotACubeError) as exc:
                log.warning("cannot rebuild the index of %s: %s", cube.url, exc)
                continue
        report.repaired_indexes.append(cube.url)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _sweep_uploads(location: Location, cutoff: datetime, report: JanitorReport) -> None:
    s3 = s3_client()
    kwargs = {"Bucket": location.bucket, "Prefix": location.key}
    stale: list[tuple[str, str]] = []
    for _page in range(100_000):  # bounded: 1,000 uploads a page
        with s3_errors(f"list uploads under {location.url}"):
            page = s3.list_multipart_uploads(**kwargs)
        for upload in page.get("Uploads", []):
            if _aware(upload["Initiated"]) <= cutoff:
                stale.append((upload["Key"], upload["UploadId"]))
            else:
                report.kept_uploads += 1
        if not page.get("IsTruncated"):
            break
        kwargs.update(KeyMarker=page.get("NextKeyMarker", ""), UploadIdMarker=page.get("NextUploadIdMarker", ""))
    for key, upload_id in stale:
        if not report.dry_run:
            try:
                with s3_errors(f"abort upload {upload_id} of s3://{location.bucket}/{key}"):
                    s3.abort_multipart_upload(Bucket=location.bucket, Key=key, UploadId=upload_id)
            except ObjectNotFoundError:  # gone meanwhile: fine
                pass
        report.aborted_uploads.append((key, upload_id))


def _sweep_staging(location: Location, cutoff: datetime, report: JanitorReport) -> None:
    """Staging objects are grouped per plan (``….ingest/{plan id}/``); a group is stale when
    its newest object is older than the cutoff."""
    s3 = s3_client()
    groups: dict[str, list[tuple[str, datetime]]] = {}
    paginator = s3.get_paginator("list_objects_v2")
    with s3_errors(f"list {location.url}"):
        for page in paginator.paginate(Bucket=location.bucket, Prefix=location.key):
            for item in page.get("Contents", []):
                key = item["Key"]
                at = key.find(STAGING_MARKER)
                if at < 0:
                    continue
                rest = key[at + len(STAGING_MARKER):]
                group = key[:at + len(STAGING_MARKER)] + rest.split("/", 1)[0] + "/"
                groups.setdefault(group, []).append((key, _aware(item["LastModified"])))
    for _group, items in sorted(groups.items()):
        if max(modified for _, modified in items) > cutoff:
            report.kept_staging += len(items)
            continue
        keys = sorted(key for key, _ in items)
        if not report.dry_run:
            for start in range(0, len(keys), 1000):
                chunk = keys[start:start + 1000]
                with s3_errors(f"delete staging objects under {location.url}"):
                    s3.delete_objects(Bucket=location.bucket, Delete={"Objects": [{"Key": k} for k in chunk],
                                                                      "Quiet": True})
        report.deleted_objects += keys


def _sweep_local(folder: Path, cutoff: datetime, report: JanitorReport) -> None:
    if not folder.is_dir():
        raise ObjectNotFoundError(f"{folder}: no such folder")
    limit = cutoff.timestamp()
    for path in sorted(folder.rglob(".*")):
        if not any(pattern.match(path.name) for pattern in _LOCAL_LEFTOVERS):
            continue
        newest = _newest_mtime(path)
        if newest > limit:
            report.kept_staging += 1
            continue
        if not report.dry_run:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        report.removed_paths.append(str(path))


def _newest_mtime(path: Path) -> float:
    try:
        newest = path.stat().st_mtime
        if path.is_dir():
            for child in path.iterdir():
                newest = max(newest, child.stat().st_mtime)
        return newest
    except FileNotFoundError:
        return time.time()
