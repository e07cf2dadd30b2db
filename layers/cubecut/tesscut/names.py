"""Targets typed by people: coordinates, or object names resolved through Sesame.

Coordinates (``"132.5 -69.2"``, ``"132.5, -69.2"``, ``"08:50:06 -69:12:00"``) are read
here and need no network. Names (``"pi Men"``, ``"TIC 261136679"``) go to CDS Sesame
through astropy's :meth:`SkyCoord.from_name`, only when a resolver answers: the lookup is
given :data:`RESOLVER_TIMEOUT_S`, and a resolver that cannot be reached is answered with
:class:`ResolverUnavailableError`, whose message asks for coordinates instead.
The caller may give its own Sesame mirrors (the API's ``CUBECUT_SESAME_URLS`` setting), e.g.
one reachable from a private network; none means astropy's.

Nothing is cached on disk (astropy's download cache would grow a Lambda's /tmp without
bound, one file per name asked): resolved names are kept in memory, at most
:data:`NAME_CACHE_SIZE` of them, least recently used first out.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Sequence


from ..errors import CubecutError, InputError
from .mast import parse_coordinates

#: Seconds a Sesame mirror is given to answer.
RESOLVER_TIMEOUT_S = 3.0
#: Longest target text accepted.
MAX_TARGET_CHARS = 200
#: Resolved names remembered in memory (per process).
NAME_CACHE_SIZE = 256
_COORDINATES_HINT = "enter coordinates instead: RA Dec in degrees (132.5 -69.2) or sexagesimal (08:50:06 -69:12:00)"


class TargetError(InputError):
    """The target text is empty or too long (400)."""


class UnknownTargetError(InputError):
    """The resolver answered but knows no object of that name (404)."""


class ResolverUnavailableError(CubecutError):
    """No name resolver could be reached from this server (503)."""


@dataclass(frozen=True)
class ResolvedTarget:
    """Where a target is: ICRS degrees, and how that was found (``coordinates`` or ``sesame``)."""

    target: str
    ra: float
    dec: float
    resolver: str

    def as_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=NAME_CACHE_SIZE)
def _sesame_degrees(name: str, mirrors: tuple[str, ...]) -> tuple[float, float]:
    """(ra, dec) in degrees of a name Sesame resolves (``SkyCoord.from_name`` with a short
    time-out, ``mirrors`` or astropy's, no disk cache); failures are not cached."""
    from astropy.coordinates import SkyCoord
    from astropy.coordinates.name_resolve import sesame_url
    from astropy.utils import data

    with data.conf.set_temp("remote_timeout", RESOLVER_TIMEOUT_S), \
            sesame_url.set(list(mirrors) or sesame_url.get()):
        coord = SkyCoord.from_name(name, cache=False)
    return float(coord.ra.deg), float(coord.dec.deg)


def resolve_target(text: str, mirrors: Sequence[str] = ()) -> ResolvedTarget:
    """Coordinates as given, else the position Sesame gives for the name (asking the Sesame
    URLs ``mirrors``, or astropy's mirrors if none).

    Raises:
        TargetError: empty or overlong text.
        UnknownTargetError: Sesame answered without a position for the name.
        ResolverUnavailableError: no Sesame mirror answered (offline).
    """
    text = text.strip()
    if not text or len(text) > MAX_TARGET_CHARS:
        raise TargetError(f"give a target: a name or coordinates (at most {MAX_TARGET_CHARS} characters)")
    coord = parse_coordinates(text) or parse_coordinates(text.replace(",", " "))  # "08:50:06, -69:12:00"
    if coord is not None:
        return ResolvedTarget(text, float(coord.ra.deg), float(coord.dec.deg), "coordinates")
    from astropy.coordinates.name_resolve import NameResolveError

    try:
        ra, dec = _sesame_degrees(text, tuple(mirrors))
    except NameResolveError as exc:
        if str(exc).startswith("Unable to find coordinates"):
            raise UnknownTargetError(f"no object named {text!r} is known to Sesame; {_COORDINATES_HINT}") from None
        raise ResolverUnavailableError(f"cannot resolve the name {text!r}: no name resolver (Sesame) is reachable "
                                       f"from this server; {_COORDINATES_HINT}") from None
    return ResolvedTarget(text, ra, dec, "sesame")
