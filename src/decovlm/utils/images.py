"""The one image loader: every command that reads an image file (training data, eval, explain,
the explorer, the world) opens it here, so every one has the same pixel limit and error message.

    img = load_image("cat.png")                  # RGB PIL image, fully decoded
    img = load_image(data, name="upload.png")    # bytes or a file object, named in errors

The pixel limit is checked from the header, before anything is decoded: a 20000x20000 PNG is
48 KB on disk and 1.2 GB in memory. The default, 64 Mpx (8000 x 8000), is ~570x the 336 x 336 the
paper's models see and above every image in LLaVA's training and evaluation sets (the largest are
a few Mpx); `DECOVLM_MAX_IMAGE_PIXELS` or `max_pixels=` change it. PIL's own guard (a warning
from 89 Mpx, an error from 179 Mpx) still applies above that.

Errors are `ImageError` (a `UserError`) naming the file: missing, not an image, truncated or
corrupt, too many pixels, empty. A PNG whose header promises more rows than its image data holds
passes PIL's checksums (`verify`) and decodes without a word, the missing rows black; its data is
measured against its header here (`png_missing_bytes`) and it is refused as truncated.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import IO

from PIL import Image

from decovlm.errors import MissingFileError, UserError

DEFAULT_MAX_PIXELS = 64_000_000
ENV_MAX_PIXELS = "DECOVLM_MAX_IMAGE_PIXELS"


class ImageError(UserError):
    """An image that cannot be used; the message names the file and why."""


class TooManyPixels(ImageError):
    """An image over the pixel limit (a decompression bomb, or just too large to be useful)."""


def max_image_pixels() -> int:
    """The pixel limit: `DECOVLM_MAX_IMAGE_PIXELS` when set (a positive integer), else 64 Mpx."""
    raw = os.environ.get(ENV_MAX_PIXELS, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        value = 0
    if value <= 0:
        raise UserError(f"{ENV_MAX_PIXELS}={raw!r}: expected a positive number of pixels")
    return value


def load_image(
    source: str | os.PathLike | bytes | IO[bytes] | Image.Image,
    name: str | None = None,
    max_pixels: int | None = None,
) -> Image.Image:
    """`source` (a path, bytes, a binary file object or a PIL image) as a decoded RGB image.

    Raises `ImageError` naming `name` (default: the path) when the file is missing, not an image,
    corrupt, empty, or has more than `max_pixels` (default `max_image_pixels()`).
    """
    limit = max_pixels if max_pixels is not None else max_image_pixels()
    if isinstance(source, Image.Image):
        _check_size(source.size, name or "image", limit)
        return source.convert("RGB")
    if isinstance(source, bytes | bytearray):
        source = io.BytesIO(source)
    label = name or (os.fspath(source) if isinstance(source, str | os.PathLike) else "image")
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            exists, is_file = path.exists(), path.is_file()
        except (OSError, ValueError) as err:  # a NUL byte, a name too long ...
            raise ImageError(f"{label!r} is not a usable file name ({err})") from None
        if not exists:
            raise MissingFileError(f"image file not found: {label}")
        if not is_file:
            raise ImageError(f"{label} is not a file (an image file is needed)")
    try:
        with _open(source) as img:  # reads the header only
            _check_size(img.size, label, limit)
            is_png = img.format == "PNG"
            img.verify()  # checksums: catches truncated / corrupt files that decode "fine"
        if hasattr(source, "seek"):
            source.seek(0)
        if is_png:
            _check_png_complete(source, label)
        with _open(source) as img:
            rgb = img.convert("RGB")  # decodes, inside the try: bad data fails here
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise TooManyPixels(
            f"{label} has over {2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} Mpx, over the "
            f"{limit / 1e6:.1f} Mpx limit (downscale it)"
        ) from None
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, struct.error ...
        detail = str(err)
        if isinstance(source, str | os.PathLike):
            detail = detail.replace(os.fspath(source), label)
        raise ImageError(
            f"cannot read image {label}: not an image file that can be decoded "
            f"({type(err).__name__}: {detail})"
        ) from None
    return rgb


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
# Adam7 passes: (first column, first row, column step, row step)
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def _png_expected_bytes(ihdr: bytes) -> tuple[int, int, int]:
    """(inflated size the header promises, bytes per row incl. filter byte, height) of a PNG."""
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr[:13])
    bits = depth * _PNG_CHANNELS.get(colour, 4)
    row = 1 + (width * bits + 7) // 8
    if not interlace:
        return height * row, row, height
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        cols, rows = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if cols > 0 and rows > 0:
            total += rows * (1 + (cols * bits + 7) // 8)
    return total, row, height


def png_missing_bytes(data: IO[bytes]) -> tuple[int, int, int] | None:
    """(missing, bytes per row, height) when a PNG's image data inflates to less than its header
    promises; None when it is complete (or not a readable PNG: PIL judges those)."""
    if data.read(8) != _PNG_SIGNATURE:
        return None
    expected = row = height = None
    inflater, produced = zlib.decompressobj(), 0
    while True:
        head = data.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        body = data.read(length)
        data.read(4)  # CRC: verify() has checked it
        if kind == b"IHDR" and len(body) >= 13:
            expected, row, height = _png_expected_bytes(body)
        elif kind == b"IDAT" and expected is not None:
            try:
                chunk = inflater.decompress(body, expected - produced + 1)
                while chunk:
                    produced += len(chunk)
                    if produced >= expected:
                        return None
                    chunk = inflater.decompress(inflater.unconsumed_tail, expected - produced + 1)
            except zlib.error:
                return None  # corrupt, not short: PIL's own error says so
        elif kind == b"IEND":
            break
    if expected is None or produced >= expected:
        return None
    return expected - produced, row, height


def _check_png_complete(source, label: str) -> None:
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as f:
            short = png_missing_bytes(f)
    else:
        short = png_missing_bytes(source)
        source.seek(0)
    if short is None:
        return
    missing, row, height = short
    have = max(0, height - -(-missing // row))
    raise ImageError(
        f"cannot read image {label}: the PNG is truncated: its header promises {height} rows, "
        f"its image data holds about {have} ({missing} bytes short); the rest would be black"
    )


def _open(source) -> Image.Image:
    with warnings.catch_warnings():  # PIL warns from 89 Mpx; our own limit decides
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(source)


def _check_size(size: tuple[int, int], label: str, limit: int) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise ImageError(f"{label} is an empty image ({w}x{h})")
    if w * h > limit:
        raise TooManyPixels(
            f"{label} is {w}x{h} = {w * h / 1e6:.1f} Mpx, over the {limit / 1e6:.1f} Mpx limit "
            f"(downscale it, or raise {ENV_MAX_PIXELS})"
        )


def downscale(image: Image.Image, max_side: int) -> Image.Image:
    """`image` shrunk (aspect kept) so its longer side is at most `max_side`; as-is when smaller."""
    if max(image.size) <= max_side:
        return image
    copy = image.copy()
    copy.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return copy
