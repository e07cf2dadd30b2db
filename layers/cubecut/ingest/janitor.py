"""Clean up after ingests that died: stale multipart uploads and staging objects.

An ingest whose process or Lambda is killed, or whose clean-up itself fails, can leave:

* an S3 multipart upload in progress: invisible to readers but its parts are billed
  (in AWS the bucket's ``AbortIncompleteMultipartUpload`` lifecycle rule removes it a day
  after it began);
* the plan's staging objects under ``{cube}.ingest/{plan id}/`` (tagged
  ``cubecut-staging=true``; in AWS the ``ExpireIngestStaging`` rule removes them after two
  days);
* for a local cube: the hidden ``.{cube}.{upload}.partial`` file (as large as the cube),
  its ``.{cube}.{upload}.parts/`` receipts, the ``.{cube}.{plan}.staging/`` folder and
  the temporary files of interrupted writes;
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
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone


from ..cube.index import INDEX_SUFFIX
from ..cube.sidecar import describes, publish_index, read_sidecar
from ..cube.index_cache import index_from_cube
from ..errors import InputError, NotACubeError, StorageError
from ..storage import Location, delete, delete_tree, list_dated, list_etags, open_upload, uploads

log = logging.getLogger(__name__)

#: A plan's staging folder: ``{cube}.ingest/{plan}/`` on S3, ``.{cube}.{plan}.staging/``
#: (hidden) in a local folder (:func:`cubecut.storage.staging_folder`).
_STAGING = re.compile(r"^(.*?(?:\.ingest/[^/]+|/\.[^/]+\.[0-9a-f]+\.staging)/)")
#: A local write's temporary file, ``.{name}.{pid}.{thread}.tmp`` (:mod:`cubecut.storage.files`).
_TEMPORARY = re.compile(r"/\.[^/]+\.\d+\.\d+\.tmp$")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


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
    repaired_indexes: list[str] = field(default_factory=list)  # cube URLs

    @property
    def nothing_done(self) -> bool:
        return not (self.aborted_uploads or self.deleted_objects or self.repaired_indexes)

    def summary(self) -> str:
        verb = "would abort" if self.dry_run else "aborted"
        lines = [f"{verb} {len(self.aborted_uploads)} multipart upload(s), kept {self.kept_uploads} younger than "
                 f"{self.older_than}",
                 f"{'would delete' if self.dry_run else 'deleted'} {len(self.deleted_objects)} staging object(s), "
                 f"kept {self.kept_staging} of ingests younger than {self.older_than}"]
        if self.repaired_indexes:
            lines.append(f"{'would rebuild' if self.dry_run else 'rebuilt'} {len(self.repaired_indexes)} stale "
                         "index sidecar(s) from their cubes")
        lines += [f"  upload {key} {upload_id}" for key, upload_id in self.aborted_uploads]
        lines += [f"  index {url}" for url in self.repaired_indexes]
        lines += [f"  object {key}" for key in self.deleted_objects]
        return "\n".join(lines)


def sweep(prefix: str | Location, older_than: str | float | timedelta = "1d", *, dry_run: bool = False,
          now: datetime | None = None) -> JanitorReport:
    """Abort uploads and delete ingest staging objects (and, locally, temporary files of
    interrupted writes) under ``prefix`` that are older than ``older_than``.

    Args:
        prefix: ``s3://bucket/prefix`` (``s3://bucket`` for the whole bucket) or a folder.
        older_than: an age (see :func:`parse_age`); younger leftovers may be live, and are kept.
        dry_run: report only.
        now: the current time (tests); default: now in UTC.
    """
    location = Location.of(prefix)
    age = parse_age(older_than)
    cutoff = (now or datetime.now(timezone.utc)) - age
    report = JanitorReport(location.url, age, dry_run)
    for cube, upload_id, initiated in list(uploads(location)):
        if initiated > cutoff:
            report.kept_uploads += 1
            continue
        if not dry_run:
            open_upload(cube).abort(upload_id)
        report.aborted_uploads.append((cube.key, upload_id))
    _sweep_staging(location, cutoff, report)
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


def _sweep_staging(location: Location, cutoff: datetime, report: JanitorReport) -> None:
    """Staging objects are grouped per plan (:data:`_STAGING`); a group is stale when its
    newest object is older than the cutoff. A temporary file is a group of its own."""
    groups: dict[str, list[tuple[str, datetime]]] = {}
    for item, modified in list_dated(location):
        staging = _STAGING.match(item.url)
        if staging or _TEMPORARY.search(item.url):
            groups.setdefault(staging.group(1) if staging else item.url, []).append((item.url, modified))
    for group, items in sorted(groups.items()):
        if max(modified for _, modified in items) > cutoff:
            report.kept_staging += len(items)
            continue
        if not report.dry_run and group.endswith("/"):
            delete_tree(group)
        elif not report.dry_run:
            delete(group)
        report.deleted_objects += sorted(url for url, _ in items)
