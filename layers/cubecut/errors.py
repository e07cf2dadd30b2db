"""Named errors raised by cubecut.

Every failure a user can cause has its own class so that callers (the CLI, the Lambda
handlers, the TESScut API) can turn it into a clear message or an HTTP 4xx without
parsing text. ``CubecutError`` is the root; ``InputError`` marks the caller's fault.
"""
from __future__ import annotations


class CubecutError(Exception):
    """Base class of all cubecut errors."""


class InputError(CubecutError, ValueError):
    """The caller asked for something that cannot be done (maps to HTTP 400)."""


class FFIError(InputError):
    """An FFI file is unreadable, truncated, or not the kind of file expected."""


class MixedFFIError(InputError):
    """The FFIs given to one ingest do not belong to one sector/camera/CCD/shape."""


class DuplicateTimeError(InputError):
    """Two FFIs have the same start time, so the cube's time axis would be ambiguous."""


class NoInputError(InputError):
    """An ingest was asked for with no FFIs."""


class NothingToAddError(NoInputError):
    """An update whose FFIs are all in the cube already: nothing is written (the CLI says
    ``nothing to add`` and exits 0, as a re-run of a job that appends new FFIs should)."""


class ManifestError(InputError):
    """An ingest manifest is not valid JSON or does not list FFIs as documented
    (docs/architecture.md, "Ingest manifests")."""


class ForbiddenInputError(ManifestError):
    """An ingest request or manifest names a place this deployment does not read or write:
    a local path, a scheme other than ``s3://``, a bucket/prefix outside the allowed ones,
    ``..`` in a key, or a cube key off TESScut's naming rule (cubecut.ingest.policy)."""


class PlanError(CubecutError):
    """The cube cannot be split into parts that satisfy S3's multipart rules."""


class StorageError(CubecutError):
    """Reading or writing an object failed for a reason other than bad input."""


class ConflictError(StorageError):
    """Another writer changed the object first. Permanent for this attempt: retrying the same
    request cannot succeed (a new read, plan or ingest is needed), so it is never retried."""


class StaleObjectError(ConflictError):
    """The object was replaced between two reads (its ETag changed)."""


class ConcurrentWriteError(ConflictError):
    """A conditional write lost: the object is no longer the version this writer started
    from (another ingest or update got there first). Nothing of the loser stays visible."""


class UploadGoneError(StorageError):
    """The cube's multipart upload no longer exists (aborted by the janitor, the bucket's
    lifecycle rule or by hand) and the object at the key is not this ingest's cube."""


class HostUnreachableError(StorageError):
    """The storage service's host does not answer (wrong endpoint, network down)."""


class ObjectNotFoundError(StorageError, InputError):
    """The named object (cube, FFI, sidecar) does not exist."""


class AccessDeniedError(StorageError, InputError):
    """Credentials were missing or refused by the storage service."""


class TargetNotWritableError(StorageError, InputError):
    """The ingest output location cannot be written."""


class NotACubeError(InputError):
    """The object is not a cube in the astrocut/cubecut layout (or it is truncated)."""


class OutsideCubeError(InputError):
    """The requested position does not fall on the cube's image at all."""


class CutoutSizeError(InputError):
    """A cutout size is not positive, not finite, or above the configured cap."""


class CoordinateError(InputError):
    """A sky position is missing, not finite, or out of range."""


class CubecutWarning(UserWarning):
    """Something a user should know about that does not stop the work (the CLI prints
    ``cubecut: warning: ...``)."""


class NoSectorWarning(CubecutWarning):
    """The FFIs carry no sector; the cube's SECTOR keyword is left undefined (as astrocut)."""


class OversizedCutoutWarning(CubecutWarning):
    """A cutout box is larger than the cube's image: most of the TPF would be NaN padding."""


class CatalogError(InputError):
    """A target catalog cannot be read at all (no such object, no ra/dec columns, not CSV/ECSV).

    Single malformed rows are not errors: a bulk job reports them per row."""


class BulkCapError(InputError):
    """A bulk job is above a configured cap (targets or pixel-frames); refused before any work."""


class FootprintTableError(InputError):
    """A footprint table (MAST's ``*_ffi_footprint_cache.json``, or one in its format) is not
    a JSON object of ``obs_id`` and ``s_region`` columns, or a region is not a polygon."""


class NoCubeError(InputError):
    """No cube covers the requested position(s) among the cubes or sectors asked for."""
