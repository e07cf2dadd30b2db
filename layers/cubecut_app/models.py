"""The typed parameters of every API route: the one place a request is validated, and the
source of the OpenAPI document's parameters and request bodies (:mod:`.openapi`).

Each route's parameters are one pydantic model. :meth:`RouteParams.parse` validates the
merged query string and form/JSON body (:func:`.forms.collect_params`: every key maps to a
list of strings) against it: a key given more than once is refused unless its field is a
list, blank values count as absent, and every failure becomes a :class:`ParamsError`
whose message names the parameter (answered ``400``). Models then build the requests the
library takes (:meth:`CutoutParams.request` ...), so routes receive validated objects.

Units and conventions: positions are ICRS degrees; sizes are ``x`` (columns) and ``y``
(rows), in pixels unless ``units`` says otherwise, every notation checked by the library's one
size parser (:mod:`cubecut.cutout.size`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Callable, ClassVar, Literal, Mapping, Sequence, TypeAlias, get_origin

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError,
                      ValidationInfo, field_validator, model_validator)
from pydantic_core import ErrorDetails

from cubecut.cutout.size import UNITS, Size, parse_size, pixel_extents
from cubecut.images import STRETCHES
from cubecut.tesscut.moving import (MAX_EPHEMERIS_CHARS, MAX_NAME_CHARS, EphemerisNeededError, MovingRequest,
                                    MovingRequestError, parse_ephemeris)
from cubecut.tesscut.names import MAX_TARGET_CHARS
from cubecut.tesscut.protocol import (MAX_RADIUS_DEG, CutoutRequest, SectorRequest, TesscutRequestError, parse_radius,
                                      parse_sectors)
from cubecut.tesscut.quicklook import FRAMES, QuicklookOptions

if TYPE_CHECKING:
    from astropy.coordinates import SkyCoord

    from cubecut.moving import Ephemeris

#: Most values one list parameter (``sector``, ``name``) may carry.
MAX_LIST_VALUES = 100
#: Longest value of an ordinary parameter (a name, a notation, a number).
MAX_VALUE_CHARS = 200
#: Longest Mashup ``request`` document accepted by ``/api/v0/invoke``.
MAX_MASHUP_CHARS = 100_000
_PRINTABLE_ASCII = r"^[ -~]*$"
#: Text that is not blank (blank values count as absent).
_NOT_BLANK = r"\S"

Params = Mapping[str, Sequence[str]]


class ParamsError(TesscutRequestError):
    """A parameter is missing, repeated, of the wrong type or out of range (400)."""


def _folded(case: str) -> BeforeValidator:
    """Strip, and fold to ``case`` ("upper"/"lower"), a text value before it is checked."""
    return BeforeValidator(lambda v: getattr(v.strip(), case)() if isinstance(v, str) else v)


def _checked_by(parse: Callable[[Any], object]) -> AfterValidator:
    """Check a value with the library's parser (its error is the 400's message); the value is kept."""
    def check(value: Any) -> Any:
        parse(value)
        return value

    return AfterValidator(check)


Product = Annotated[Literal["SPOC", "TICA"], _folded("upper"),
                    Field(description="Cube product: SPOC (default) or TICA.")]
if TYPE_CHECKING:  # the allowed values come from one tuple each, which a type checker cannot read
    Units: TypeAlias = str
    Frame: TypeAlias = str
    Stretch: TypeAlias = str
else:
    Units = Annotated[Literal[tuple(UNITS)], _folded("lower"),
                      Field(description="Unit of `x` and `y`: px (default), arcsec/s, arcmin/m or deg/d.")]
    Frame = Annotated[Literal[FRAMES], _folded("lower"),
                      Field(description="Frame drawn: the per-pixel median (default) or the first with data.")]
    Stretch = Annotated[Literal[tuple(STRETCHES)], _folded("lower"),
                        Field(description="Intensity stretch of the picture (default asinh).")]


def _limit_phrase(kind: str, ctx: dict[str, Any]) -> str:
    limit = next(iter(ctx.values()))
    if kind == "greater_than" and limit == 0:
        return "must be positive"
    words = {"greater_than": "greater than", "greater_than_equal": "at least", "less_than": "less than",
             "less_than_equal": "at most"}
    return f"must be {words[kind]} {limit}"


def _message(error: ErrorDetails, missing: Mapping[str, str]) -> str:
    """One pydantic error as a sentence naming the parameter."""
    key = str(error["loc"][0]) if error["loc"] else "request"
    kind, given, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "missing":
        return missing.get(key, f"'{key}' is required")
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"):
        what = "a whole number" if kind.startswith("int") else "a number"
        return f"'{key}' must be {what}, got {given!r}"
    if kind == "finite_number":
        return f"'{key}' must be finite, got {given!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"'{key}' {_limit_phrase(kind, ctx)}, got {given}"
    if kind == "literal_error":
        return f"{key} must be one of {ctx.get('expected', '')}; got {given!r}"
    if kind == "string_too_long":
        return f"'{key}' must be at most {ctx['max_length']} characters"
    if kind == "string_too_short":
        return f"'{key}' must not be empty"
    if kind == "too_long":
        return f"'{key}' may be given at most {ctx['max_length']} times"
    if kind == "string_pattern_mismatch":
        return f"'{key}' is not in a form this parameter takes (see /openapi.json), got {given!r}"
    return f"'{key}': {error['msg']}"


class RouteParams(BaseModel):
    """Base of the route models: unknown keys ignored, no NaN or infinity anywhere."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True, populate_by_name=True)
    #: Messages for missing required parameters, by key (default "'key' is required").
    MISSING: ClassVar[dict[str, str]] = {}

    @classmethod
    def parse(cls, params: Params) -> "RouteParams":
        """Validate merged parameters (each key a list of strings). Raises ParamsError."""
        data: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            key = field.alias or name
            values = [v for v in params.get(key) or [] if v.strip() != ""]
            if get_origin(field.annotation) is list:
                if values:
                    data[key] = values
            elif len(values) > 1:
                raise ParamsError(f"'{key}' given {len(values)} times; give it once")
            elif values:
                data[key] = values[0]
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ParamsError(_message(exc.errors(include_url=False)[0], cls.MISSING)) from None


class PositionParams(RouteParams):
    ra: float = Field(ge=0, le=360, description="Right ascension, ICRS degrees.")
    dec: float = Field(ge=-90, le=90, description="Declination, ICRS degrees.")

    def coord(self) -> SkyCoord:
        from astropy.coordinates import SkyCoord  # loads on the first request, not at import

        return SkyCoord(self.ra % 360.0, self.dec, unit="deg")


class SectorParams(PositionParams):
    """``sector``: the cubes whose image a cone touches."""

    radius: Annotated[str, _checked_by(parse_radius)] = Field("0", max_length=40, description=(
        f"Cone radius: degrees, or a number with a unit (`0m`, `30s`, `1d`, `3px` at 21 arcsec per pixel, "
        f"`5 arcmin`); at most {MAX_RADIUS_DEG} deg."))
    product: Product = "SPOC"

    def request(self) -> SectorRequest:
        return SectorRequest(self.coord(), parse_radius(self.radius), self.product)


class SizeParams(RouteParams):
    """Cutout size and cube filters, shared by the static and moving cutout routes."""

    x: float = Field(5, description="Cutout width (columns), in `units` (default 5 px; whole pixels).")
    y: float | None = Field(None, description="Cutout height (rows), in `units`; defaults to `x`.")
    units: Units = "px"
    sector: Annotated[list[Annotated[str, Field(max_length=MAX_VALUE_CHARS)]], _checked_by(parse_sectors)] = Field(
        default_factory=list, max_length=MAX_LIST_VALUES,
        description="Sectors to cut (absent: all): repeated, comma-separated or a list literal `[28, 68]`.")
    product: Product = "SPOC"

    @model_validator(mode="after")
    def _size(self) -> "SizeParams":
        self.size()
        return self

    def size(self) -> Size:
        """``(x, y)`` = (columns, rows): whole pixels as ints, or angles as Quantities."""
        return parse_size((self.x, self.x if self.y is None else self.y), unit=self.units, whole_pixels=True)

    def sectors(self) -> frozenset[int] | None:
        return parse_sectors(self.sector)


class CutoutParams(PositionParams, SizeParams):
    """``astrocut``: a static cutout of every matching cube."""

    def request(self) -> CutoutRequest:
        return CutoutRequest(self.coord(), self.size(), self.sectors(), self.product)


class QuicklookParams(CutoutParams):
    """``quicklook``: ``astrocut``'s parameters and how to draw them."""

    frame: Frame = "median"
    stretch: Stretch = "asinh"

    def options(self) -> QuicklookOptions:
        return QuicklookOptions(self.frame, self.stretch)


_HORIZONS_HINT = (
    "moving_target requests need the target's path as 'ephemeris': this server has no network access to JPL "
    'Horizons. Send ephemeris={"time": [BTJD, ...], "ra": [deg, ...], "dec": [deg, ...]} (or a list '
    'of {"time", "ra", "dec"} rows; time_format jd/mjd/isot with time_scale for other times). Where '
    "Horizons is reachable, `cubecut moving CUBES --horizons NAME --start BTJD --stop BTJD` or "
    "cubecut.moving.horizons_ephemeris() look the path up.")


class MovingParams(SizeParams):
    """``moving_target/sector`` and ``moving_target/astrocut``: the path comes with the request."""

    ephemeris: str | None = Field(None, max_length=MAX_EPHEMERIS_CHARS, description=(
        'The path as JSON: `{"time": [...], "ra": [...], "dec": [...]}` or a list of `{time, ra, dec}` rows '
        "(ICRS degrees as seen from TESS). Required: JPL Horizons is not reachable from the API."),
        json_schema_extra={"x-required": True})
    obj_id: str | None = Field(None, max_length=MAX_NAME_CHARS, pattern=_PRINTABLE_ASCII,
                               description="The target's name (printable ASCII): the TPFs' OBJECT.")
    obj_type: Literal["majorbody", "smallbody"] | None = Field(
        None, description="TESScut's object type (accepted; only Horizons would use it).")
    time_format: Annotated[Literal["btjd", "jd", "mjd", "isot", "iso"], _folded("lower")] = Field(
        "btjd", description="How ephemeris times are written (default BTJD numbers).")
    time_scale: Annotated[Literal["tdb", "tt", "utc", "tai"], _folded("lower")] = Field(
        "tdb", description="Time scale of jd/mjd/isot/iso times (default tdb).")

    @field_validator("obj_id")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return (value.strip() or None) if value is not None else None

    @classmethod
    def parse(cls, params: Params) -> "MovingParams":
        try:
            return super().parse(params)  # type: ignore[return-value]
        except ParamsError as exc:
            if str(exc).startswith("'obj_id'"):  # pattern or length: the one message for both
                raise MovingRequestError(f"obj_id must be at most {MAX_NAME_CHARS} printable ASCII characters") \
                    from None
            raise

    def request(self) -> MovingRequest:
        if self.ephemeris is None:
            named = f"the path of {self.obj_id!r}" if self.obj_id else "the target's path"
            raise EphemerisNeededError(_HORIZONS_HINT.replace("the target's path", named, 1))
        ephemeris: Ephemeris = parse_ephemeris(self.ephemeris, name=self.obj_id, time_format=self.time_format,
                                               time_scale=self.time_scale)
        return MovingRequest(ephemeris, self.obj_id, self.size(), self.sectors(), self.product)


class FfiWcsParams(RouteParams):
    """``ffi_wcs``: one cube, by sector, camera and CCD."""

    sector: int = Field(ge=1, le=9999, description="TESS sector.")
    camera: int = Field(ge=1, le=4, description="Camera (1-4).")
    ccd: int = Field(ge=1, le=4, description="CCD (1-4).")
    product: Product = "SPOC"


class MashupParams(RouteParams):
    """``/api/v0/invoke``: one Mashup request."""

    request: str = Field(max_length=MAX_MASHUP_CHARS, pattern=_NOT_BLANK, description=(
        "The Mashup request, JSON: `{service, params}` with service Mast.Caom.Filtered.Position, "
        "Mast.Caom.Filtered, Mast.Caom.Cone or Mast.Name.Lookup."))


class ColumnsConfigParams(RouteParams):
    """``columnsconfig``: which column configuration."""

    col_config_id: Literal["Mast.Caom.Cone"] = Field(alias="colConfigId", description="Column configuration.")


class ResolverParams(RouteParams):
    """SANTA's ``/Santa-war/query``: names to resolve (positions written as names)."""

    name: list[Annotated[str, Field(max_length=MAX_VALUE_CHARS)]] = Field(
        default_factory=list, max_length=MAX_LIST_VALUES, description="A name; repeat the key for several.")


class ResolveParams(RouteParams):
    """``/v1/resolve``: where a target is."""

    MISSING: ClassVar[dict[str, str]] = {
        "target": f"give a target: a name or coordinates (at most {MAX_TARGET_CHARS} characters)"}
    target: str = Field(max_length=MAX_TARGET_CHARS, pattern=_NOT_BLANK, description=(
        "Coordinates (`132.5 -69.2`, `08:50:06 -69:12:00`) or an object name (resolved by CDS Sesame when a "
        "mirror is reachable)."))


class V1QuicklookParams(PositionParams):
    """``/v1/quicklook``: one named cube's cutout as a picture."""

    MISSING: ClassVar[dict[str, str]] = {
        "cube": "'cube' is required: a cube's name such as tess-s0001-1-1 (GET /v1/cubes lists them)"}
    cube: str = Field(max_length=MAX_VALUE_CHARS, pattern=_NOT_BLANK,
                      description="A cube's name, e.g. tess-s0001-1-1 (see /v1/cubes).")
    size: Annotated[str, _checked_by(pixel_extents)] = Field(
        "11", max_length=40, description="Cutout size in whole pixels: `N` or `NX,NY` (default 11).")
    frame: Frame = "median"
    stretch: Stretch = "asinh"

    def pixels(self) -> tuple[int, int]:
        """``(columns, rows)``."""
        return pixel_extents(self.size)

    def options(self) -> QuicklookOptions:
        return QuicklookOptions(self.frame, self.stretch)


def _size_list(value: Any) -> Any:
    """``size`` as a list: ``5``, ``"5,3"``, ``[5, 3]`` (JSON) or a repeated form key."""
    values = value if isinstance(value, list) else [value]
    return [part.strip() for v in values for part in (v.split(",") if isinstance(v, str) else [v])]


class V1CutoutParams(PositionParams):
    """``POST /v1/cutouts``: one TPF from one cube, named by ``cube`` or by sector/camera/CCD."""

    cube: str | None = Field(None, max_length=MAX_VALUE_CHARS,
                             description="A cube's name (tess-s0001-1-1) or catalog URL; or give sector, camera, ccd.")
    sector: int | None = Field(None, ge=1, le=9999, description="With camera and ccd, instead of `cube`.")
    camera: int | None = Field(None, ge=1, le=4)
    ccd: int | None = Field(None, ge=1, le=4)
    product: Product = "SPOC"
    size: Annotated[list[float], BeforeValidator(_size_list)] = Field(
        default_factory=lambda: [11.0], min_length=1, max_length=2,
        description="`N` or `[NX, NY]` (JSON) / `N` or `NX,NY` (form), in `units`; default 11 px.")
    units: Annotated[Literal["px", "arcsec", "arcmin", "deg"], _folded("lower")] = Field(
        "px", description="Unit of `size`.")

    @model_validator(mode="after")
    def _named_and_sized(self) -> "V1CutoutParams":
        if self.cube is None and None in (self.sector, self.camera, self.ccd):
            raise TesscutRequestError("name the cube: 'cube' (e.g. 'tess-s0001-1-1') or 'sector', 'camera' and 'ccd'")
        self.extents()
        return self

    def extents(self) -> Size:
        """``(x, y)``: whole pixels as ints, or angles as Quantities."""
        return parse_size((self.size[0], self.size[-1]), unit=self.units, whole_pixels=True)

    def selector(self) -> dict[str, Any]:
        """What names the cube, as :func:`.v1.find_cube` takes it."""
        if self.cube is not None:
            return {"cube": self.cube}
        return {"sector": self.sector, "camera": self.camera, "ccd": self.ccd, "product": self.product}


#: Longest catalog text ``POST /v1/bulk`` takes (characters).
#: Larger catalogs go to S3 and run with ``cubecut bulk --stack``.
MAX_BULK_CATALOG_CHARS = 4 * 1024 * 1024
#: Most cubes one bulk job may name.
MAX_BULK_CUBES = 50
#: Largest cutout side a bulk job may ask for (pixels).
MAX_BULK_SIDE = 100


class BulkParams(RouteParams):
    """``POST /v1/bulk``: start a bulk job for a catalog given as text."""

    MISSING: ClassVar[dict[str, str]] = {
        "catalog": "'catalog' is required: CSV or ECSV text with ra and dec columns (degrees; optional size, id)"}
    catalog: str = Field(max_length=MAX_BULK_CATALOG_CHARS, pattern=_NOT_BLANK, description=(
        "The target catalog as CSV or ECSV text: columns `ra`, `dec` (ICRS degrees), optional `size` (`N` or "
        "`NXxNY` pixels) and `id`. Malformed rows are reported per row in the results, never fail the job."))
    cubes: list[Annotated[str, Field(max_length=MAX_VALUE_CHARS, pattern=_NOT_BLANK)]] = Field(
        default_factory=list, max_length=MAX_BULK_CUBES,
        description="Cube names (e.g. tess-s0001-1-1, see /v1/cubes); default: every cube containing each target.")
    size: Annotated[str, _checked_by(lambda value: pixel_extents(value, MAX_BULK_SIDE))] = Field(
        "11", max_length=40,
        description=f"Default cutout size in whole pixels: `N` or `NX,NY` (default 11, at most {MAX_BULK_SIDE}).")
    shards: bool = Field(False, description="Write each tile's TPFs as one tar (see docs/bulk.md), not one object each.")

    def pixels(self) -> tuple[int, int]:
        """``(columns, rows)``."""
        return pixel_extents(self.size, MAX_BULK_SIDE)


class BulkStatusParams(RouteParams):
    """``GET /v1/bulk``: how far a bulk job got."""

    MISSING: ClassVar[dict[str, str]] = {"job": "'job' is required: the id POST /v1/bulk answered"}
    job: str = Field(max_length=40, description=(
        "The job's id, as `POST /v1/bulk` answered it (`bulk-YYYYMMDDTHHMMSS-` and 8 hex digits)."))
    files: int | None = Field(None, ge=0, le=10**9, description=(
        "Once the job succeeded: list its files from this 0-based position, as presigned HTTPS URLs "
        "(`files`: row, id, status, url, member; up to 1,000 per answer, `next_files` the next page's URL)."))
    token: str | None = Field(None, max_length=43, description=(
        "The job's capability, as `POST /v1/bulk` answered it (in `status_url`): needed by anyone but the "
        "job's owner (the IAM principal or JWT subject that started it)."))

    @field_validator("job", "token")
    @classmethod
    def _bulk_names(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Checked against the forms :mod:`cubecut.bulk.submit` makes (imported here, at a bulk
        request, so that the API handler's import does not load the bulk engine)."""
        from cubecut.bulk.submit import CAPABILITY, JOB_ID

        if value is not None and not (JOB_ID if info.field_name == "job" else CAPABILITY).match(value):
            raise ParamsError(f"'{info.field_name}' is not a bulk job's {info.field_name}, got {value!r}")
        return value
