"""OME-XML (the metadata of OME-TIFF) parsed safely: channels, colours and physical pixel size."""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree

from tiler.errors import CorruptImage

__all__ = ["OME_UNITS", "OmeImage", "OmeMetadata", "UnsafeXml", "ome_color", "parse_ome_xml"]

#: OME length unit symbols -> (OME-NGFF unit name, factor from the OME unit to the NGFF one).
OME_UNITS: dict[str, tuple[str, float]] = {
    "Ym": ("yottameter", 1.0), "Zm": ("zettameter", 1.0), "Em": ("exameter", 1.0),
    "Pm": ("petameter", 1.0), "Tm": ("terameter", 1.0), "Gm": ("gigameter", 1.0),
    "Mm": ("megameter", 1.0), "km": ("kilometer", 1.0), "hm": ("hectometer", 1.0),
    "dam": ("meter", 10.0), "m": ("meter", 1.0), "dm": ("decimeter", 1.0),
    "cm": ("centimeter", 1.0), "mm": ("millimeter", 1.0), "\u00b5m": ("micrometer", 1.0),
    "\u03bcm": ("micrometer", 1.0), "um": ("micrometer", 1.0), "micron": ("micrometer", 1.0),
    "nm": ("nanometer", 1.0), "pm": ("picometer", 1.0), "fm": ("femtometer", 1.0),
    "am": ("attometer", 1.0), "zm": ("zeptometer", 1.0), "ym": ("yoctometer", 1.0),
    "\u00c5": ("angstrom", 1.0), "\u212b": ("angstrom", 1.0), "in": ("inch", 1.0),
    "thou": ("inch", 1e-3), "li": ("inch", 1.0 / 12), "pt": ("inch", 1.0 / 72),
    "ft": ("foot", 1.0), "yd": ("yard", 1.0), "mi": ("mile", 1.0), "pc": ("parsec", 1.0),
    "ua": ("meter", 149597870700.0), "ly": ("meter", 9460730472580800.0),
}
#: The unit OME assumes when a physical size is given without one.
OME_DEFAULT_UNIT = "\u00b5m"


class UnsafeXml(CorruptImage):
    """The OME-XML declares a DTD or entities, which are refused (entity bombs, external files)."""


@dataclass(frozen=True)
class OmeImage:
    """What the tiler uses from one OME ``Image``: sizes, channels and pixel size."""

    name: str | None
    size_x: int
    size_y: int
    channel_names: list[str | None]
    channel_colors: list[str | None]
    samples_per_pixel: int = 1
    pixel_size: tuple[float, float] | None = None  # (y, x) in ``unit``
    unit: str | None = None  # OME-NGFF unit name


@dataclass(frozen=True)
class OmeMetadata:
    """The images an OME-XML document describes and the data files it refers to."""

    images: list[OmeImage]
    root_uuid: str | None = None  # this file's UUID, if the document states it
    file_uuids: set[str] = field(default_factory=set)  # every UUID TiffData elements name

    @property
    def other_files(self) -> int:
        """How many files besides this one hold image data (0 for a single-file OME-TIFF).

        Without a root UUID, one named file is taken to be this file (it may have been renamed).
        """
        others = self.file_uuids - {self.root_uuid}
        return len(others) if self.root_uuid else max(0, len(others) - 1)


def parse_ome_xml(text: str | bytes) -> OmeMetadata:
    """Parse OME-XML with defusedxml: no DTD, no entity expansion, no external references.

    Raises UnsafeXml (a CorruptImage) for a DTD or entities and CorruptImage for text that
    is not well-formed XML.
    """
    try:
        root = defusedxml.ElementTree.fromstring(text, forbid_dtd=True, forbid_entities=True,
                                                 forbid_external=True)
    except defusedxml.DefusedXmlException as error:
        raise UnsafeXml(f"the OME-XML metadata is refused: {type(error).__name__} "
                        "(DTDs and entities are not allowed)") from error
    except (ParseError, ValueError) as error:
        raise CorruptImage(f"the OME-XML metadata is not well-formed XML: {error}") from error
    root_uuid = root.get("UUID")
    images, uuids = [], set()
    for element in root:
        if _local(element) != "Image":
            continue
        pixels = _child(element, "Pixels")
        if pixels is None:
            continue
        uuids |= {(uuid.text or "").strip() for data in _children(pixels, "TiffData")
                  for uuid in _children(data, "UUID")}
        image = _image(element, pixels)
        if image is not None:
            images.append(image)
    return OmeMetadata(images=images, root_uuid=root_uuid, file_uuids=uuids - {""})


def ome_color(value: str | None) -> str | None:
    """An OME Color (signed 32-bit RGBA integer) as hex "RRGGBB"; None if absent or invalid."""
    if value is None:
        return None
    try:
        rgba = int(value) & 0xFFFFFFFF
    except ValueError:
        return None
    return f"{rgba >> 24:02X}{(rgba >> 16) & 0xFF:02X}{(rgba >> 8) & 0xFF:02X}"


def _image(element: Element, pixels: Element) -> OmeImage | None:
    try:
        size_x, size_y = int(pixels.get("SizeX", "")), int(pixels.get("SizeY", ""))
    except ValueError:
        return None
    channels = _children(pixels, "Channel")
    samples = _int(channels[0].get("SamplesPerPixel")) if channels else None
    pixel_size, unit = _pixel_size(pixels)
    return OmeImage(
        name=element.get("Name"), size_x=size_x, size_y=size_y,
        channel_names=[channel.get("Name") or None for channel in channels],
        channel_colors=[ome_color(channel.get("Color")) for channel in channels],
        samples_per_pixel=samples or 1, pixel_size=pixel_size, unit=unit,
    )


def _pixel_size(pixels: Element) -> tuple[tuple[float, float] | None, str | None]:
    """(y, x) pixel size and its NGFF unit; Y is converted to X's unit if they differ."""
    sizes = []
    for axis in ("Y", "X"):
        value = _float(pixels.get(f"PhysicalSize{axis}"))
        unit = OME_UNITS.get(pixels.get(f"PhysicalSize{axis}Unit", OME_DEFAULT_UNIT).strip())
        if value is None or value <= 0 or unit is None:
            return None, None
        sizes.append((value * unit[1], unit[0]))
    (size_y, unit_y), (size_x, unit_x) = sizes
    if unit_y != unit_x:
        size_y *= _meters(unit_y) / _meters(unit_x)
    return (float(f"{size_y:.9g}"), float(f"{size_x:.9g}")), unit_x


#: Metres per NGFF unit, for the rare file whose X and Y sizes use different units.
_METERS = {"meter": 1.0, "decimeter": 1e-1, "centimeter": 1e-2, "millimeter": 1e-3,
           "micrometer": 1e-6, "nanometer": 1e-9, "picometer": 1e-12, "angstrom": 1e-10,
           "femtometer": 1e-15, "attometer": 1e-18, "zeptometer": 1e-21, "yoctometer": 1e-24,
           "hectometer": 1e2, "kilometer": 1e3, "megameter": 1e6, "gigameter": 1e9,
           "terameter": 1e12, "petameter": 1e15, "exameter": 1e18, "zettameter": 1e21,
           "yottameter": 1e24, "inch": 0.0254, "foot": 0.3048, "yard": 0.9144,
           "mile": 1609.344, "parsec": 3.0856775814913673e16}


def _meters(unit: str) -> float:
    return _METERS[unit]


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _local(element: Element) -> str:
    """Tag name without its XML namespace."""
    return str(element.tag).rsplit("}", 1)[-1]


def _children(element: Element, name: str) -> list[Element]:
    return [child for child in element if _local(child) == name]


def _child(element: Element, name: str) -> Element | None:
    return next(iter(_children(element, name)), None)
