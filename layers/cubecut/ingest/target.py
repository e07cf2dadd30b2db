"""Where a cube is assembled: the cube's :class:`~cubecut.storage.base.Upload` (an S3
multipart upload, or a hidden local file renamed into place), bound to its plan.

Until it is completed no reader can see a partial cube. Completion is conditional
(docs/architecture.md, "Consistency model"): it succeeds only if the object at the key is
still the version the plan started from (``replaces``, an ETag; None = no object);
otherwise ConcurrentWriteError, and the cube at the key is left as the other writer made it.

Every cube an ingest makes carries user metadata naming its plan (``cubecut-plan``) and
the version it replaced (``cubecut-replaces``), so a retried Finalize can prove an object
is its own and an audit can check that the versions form one line.
"""
from __future__ import annotations

from ..errors import ConcurrentWriteError
from ..storage import PartReceipt, Upload

#: S3 user-metadata keys on every cube cubecut writes (``x-amz-meta-...``).
PLAN_KEY = "cubecut-plan"
REPLACES_KEY = "cubecut-replaces"
#: ``cubecut-replaces`` of a cube written where there was none.
NO_VERSION = "none"


def version_metadata(plan_id: str, replaces: str | None) -> dict[str, str]:
    """The user metadata binding a cube object to its plan and predecessor."""
    return {PLAN_KEY: plan_id, REPLACES_KEY: (replaces or NO_VERSION).strip('"')}


def commit(target: Upload, upload_id: str, parts: list[PartReceipt], replaces: str | None) -> str | None:
    """Complete ``upload_id`` if the key still holds ``replaces``; the new cube's ETag."""
    try:
        return target.complete(upload_id, parts, if_match=replaces, if_none_match=replaces is None)
    except ConcurrentWriteError as exc:
        started = f"version {replaces}" if replaces else "no cube"
        raise ConcurrentWriteError(f"{exc}: another ingest or update replaced the cube first (this one started "
                                   f"from {started}); its upload was not completed and the other writer's cube "
                                   "stays") from None
