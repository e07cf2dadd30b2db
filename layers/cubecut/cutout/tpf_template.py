"""The per-cube TPF header template of the fast writer (:mod:`.tpf`), and its cache.

Every TPF of one cube shares most of its header cards and its per-frame columns. The
template is astropy's own output for a 1x1 cutout of the cube
(:func:`.tpf_reference.reference_tpf` written with ``writeto(checksum=True)``), split into
card images with the positions ("slots") of the cards a cutout sets
(:func:`.tpf_reference.target_values`). It is made once per cube index object and held
on it (:func:`template_for`), or read from the index sidecar, where ingest stores it
(:func:`template_state`, :func:`stored_template`).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.io.fits.verify import VerifyError

from .. import fitswrite
from ..cube.index import CubeIndex
from ..errors import NotACubeError
from ..fitsio import CARD, data_bytes, padded
from .geometry import Box, cutout_wcs, ffi_wcs, fit_linear_wcs
from .tpf_reference import CUBECUT_VERSION, per_frame_columns, reference_tpf, row_dtype, target_values


@dataclass(frozen=True)
class HeaderTemplate:
    """One HDU's header for every cutout of a cube: card images, with the positions of the
    cards a cutout sets (and their comments) and of CHECKSUM/DATASUM."""

    images: tuple[str, ...]
    #: Per card a cutout sets: its position, comment, and the ``(type, repr)`` of the value
    #: the template's image holds (a cutout with that value keeps the image).
    slots: dict[str, tuple[int, str, tuple[type, str]]]
    checksum: int
    datasum: int

    def render(self, values: dict[str, object]) -> list[str]:
        """The card images with ``values`` set; cards whose image differs only by keyword
        (the per-column WCS of columns 4-8) are rendered once."""
        images = list(self.images)
        rendered: dict[tuple[str, type, str], str] = {}
        for key, value in values.items():
            try:
                position, comment, held = self.slots[key]
            except KeyError:
                raise TemplateError(f"the TPF template has no card {key}") from None
            kind, text = type(value), repr(value)
            if (kind, text) == held:
                continue
            same = (comment, kind, text)
            image = rendered.get(same)
            image = fitswrite.card_image(key, value, comment) if image is None else fitswrite.rekeyed(image, key)
            rendered[same] = image
            images[position] = image
        return images


@dataclass(frozen=True)
class Template:
    """What every TPF of one cube shares: its three header templates and per-frame columns."""

    headers: tuple[HeaderTemplate, HeaderTemplate, HeaderTemplate]
    columns: dict[str, np.ndarray]

    @property
    def name_width(self) -> int:
        """Bytes of an FFI_FILE value: the longest FFI name."""
        return self.columns["FFI_FILE"].dtype.itemsize

    @cached_property
    def constant_words(self) -> int | None:
        """Sum of the big-endian 32-bit words of :attr:`columns` over all rows, when every
        row is a whole number of words (else None)."""
        if self.name_width % 4:
            return None
        table = np.zeros(len(self.columns["TIME"]), dtype=row_dtype(self.name_width, 1, 1))  # image columns 0
        for name, values in self.columns.items():
            table[name] = values
        return int(table.view(">u4").sum(dtype=np.uint64))


class TemplateError(RuntimeError):
    """A cutout needs a header card that the cube's TPF template does not have (a bug)."""


#: The attribute of a :class:`CubeIndex` object that holds its template (made from that
#: object's own fields, so it lives and dies with it: no cache to key, evict or clear;
#: ``dataclasses.replace`` gives a new object, which makes its own).
_HELD = "_cubecut_tpf_template"


def template_for(index: CubeIndex, coord: SkyCoord) -> Template:
    """The cube's TPF template (``coord`` is any target: its cards are slots), made once
    per index object and held on it: the one stored in the index (:func:`stored_template`),
    else built (:func:`make_template`, ~0.1 s of astropy)."""
    held = vars(index)
    template = held.get(_HELD)
    if template is None:
        built = stored_template(index) or make_template(index, coord)
        template = held.setdefault(_HELD, built)  # two threads may build it: one is kept
    return template


def make_template(index: CubeIndex, coord: SkyCoord) -> Template:
    """The template from the file astropy writes for a 1x1 cutout of the cube."""
    box = Box(0, 0, 1, 1)
    zeros = np.zeros((index.nt, 1, 1), dtype=np.float32)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            # "fix": what astropy can repair in a cube's odd primary cards it repairs (for a
            # valid header this writes exactly what the default "exception" writes)
            reference_tpf(index, box, zeros, zeros, coord).writeto(buffer, checksum=True, output_verify="fix")
    except VerifyError as exc:
        raise NotACubeError(f"a TPF cannot carry this cube's primary header: {exc}") from None
    data = buffer.getvalue()
    fit = fit_linear_wcs(cutout_wcs(ffi_wcs(index), box), 1, 1)
    columns = per_frame_columns(index)
    headers, offset = [], 0
    for values in target_values(box, fit, coord, row_dtype(columns["FFI_FILE"].dtype.itemsize, 1, 1).itemsize):
        images: list[str] = []
        while not data.startswith(b"END ", offset):
            images.append(data[offset:offset + CARD].decode("ascii"))
            offset += CARD
        offset = padded(offset + CARD)
        positions = {image[:8].rstrip(): number for number, image in enumerate(images)}
        slots = {key: (positions[key], fits.Card.fromstring(images[positions[key]]).comment,
                       (type(value), repr(value))) for key, value in values.items()}
        headers.append(HeaderTemplate(tuple(images), slots, positions["CHECKSUM"], positions["DATASUM"]))
        header = fits.Header.fromstring("".join(images))
        offset += padded(data_bytes(header))
    primary, pixels, aperture = headers  # one template per HDU
    return Template((primary, pixels, aperture), columns)


#: A stored template (:func:`template_state`) is used only by the writer version that made it.
TEMPLATE_FORMAT = f"cubecut {CUBECUT_VERSION} tpf-template 1"


def template_state(index: CubeIndex) -> dict | None:
    """The cube's TPF header template as JSON data, for the index sidecar
    (:attr:`CubeIndex.tpf_template`): a process that loads the index then needs not build
    it (~0.1 s of astropy on the first cutout of a cube). None when no TPF can carry the
    cube's primary header (the cutout raises then)."""
    try:
        template = make_template(index, SkyCoord(0.0, 0.0, unit="deg"))  # any target: its cards are slots
    except NotACubeError:
        return None
    return {"format": TEMPLATE_FORMAT,
            "headers": [{"cards": "".join(h.images), "checksum": h.checksum, "datasum": h.datasum,
                         "slots": {key: [position, comment] for key, (position, comment, _) in h.slots.items()}}
                        for h in template.headers]}


#: What a stored template's slots hold as their value: nothing a cutout's value equals (the
#: stored cards are rendered for an arbitrary target, so every slot is rendered again).
_NOT_HELD: tuple[type, str] = (type(None), "")


def stored_template(index: CubeIndex) -> Template | None:
    """The template :func:`template_state` stored in ``index``, if this writer version made it."""
    state = index.tpf_template
    if not isinstance(state, dict) or state.get("format") != TEMPLATE_FORMAT:
        return None
    try:
        primary, pixels, aperture = (
            HeaderTemplate(tuple(h["cards"][i:i + CARD] for i in range(0, len(h["cards"]), CARD)),
                            {str(key): (int(position), str(comment), _NOT_HELD)
                             for key, (position, comment) in h["slots"].items()},
                            int(h["checksum"]), int(h["datasum"]))
            for h in state["headers"])
    except (KeyError, TypeError, ValueError):
        return None  # not what template_state writes: build the template instead
    return Template((primary, pixels, aperture), per_frame_columns(index))
