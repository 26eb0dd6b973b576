"""The images of the reliability corpus, made at test time (no binary files in the repo).

Each maker writes one image that people really have and that has tripped image code:
a phone photo with an EXIF rotation, 16-bit and float greyscale, palette and alpha images,
an animation, a truncated file, a decompression bomb, images too small or too narrow.

    python tests/corpus/make_images.py FOLDER   # write them all, to look at
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from stylekit.testing import pattern


def _photo(h: int = 48, w: int = 64) -> Image.Image:
    return pattern(h, w, "content")


def exif_rotated(path: Path) -> None:
    """A landscape-stored JPEG whose EXIF says 'rotate 90 degrees': shown portrait."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; viewers rotate 90 degrees clockwise
    _photo().save(path, "JPEG", exif=exif.tobytes(), quality=95)


def grey16(path: Path) -> None:
    """A 16-bit greyscale PNG, mid-grey (32768/65535): Pillow's convert('RGB') makes it white."""
    Image.fromarray(np.full((48, 64), 32768, dtype=np.uint16)).save(path)


def float_tiff(path: Path) -> None:
    """A 32-bit float greyscale TIFF with values in [0, 1], mid-grey."""
    Image.fromarray(np.full((48, 64), 0.5, dtype=np.float32)).save(path)


def palette_transparent(path: Path) -> None:
    """A palette PNG whose colour 0 is transparent (a GIF-style transparency key)."""
    img = _photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    img.save(path, transparency=0)


def grey_alpha(path: Path) -> None:
    """A greyscale PNG with an alpha channel, fully transparent on the left half."""
    alpha = np.zeros((48, 64), dtype=np.uint8)
    alpha[:, 32:] = 255
    Image.merge("LA", [_photo().convert("L"), Image.fromarray(alpha)]).save(path)


def rgba_transparent(path: Path) -> None:
    """An RGBA PNG, black where opaque, fully transparent on the left half."""
    pixels = np.zeros((48, 64, 4), dtype=np.uint8)
    pixels[:, 32:, 3] = 255
    Image.fromarray(pixels, "RGBA").save(path)


def animated_gif(path: Path) -> None:
    """A three-frame animated GIF."""
    frames = [_photo().rotate(120 * k).convert("P", palette=Image.Palette.ADAPTIVE) for k in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def cmyk_jpeg(path: Path) -> None:
    """A CMYK JPEG, as print workflows save them."""
    _photo().convert("CMYK").save(path, "JPEG")


def one_bit(path: Path) -> None:
    """A 1-bit black-and-white PNG."""
    _photo().convert("1").save(path)


def truncated_jpeg(path: Path) -> None:
    """A JPEG cut off half way, as an interrupted download leaves it: the header is fine."""
    buffer = io.BytesIO()
    _photo(96, 128).save(buffer, "JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def truncated_png(path: Path) -> None:
    """A PNG cut off in its image data."""
    buffer = io.BytesIO()
    _photo(96, 128).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def empty_file(path: Path) -> None:
    path.write_bytes(b"")


def text_file(path: Path) -> None:
    path.write_text("this is text, not an image\n")


def bomb(path: Path) -> None:
    """A PNG that claims 100000x100000 pixels in 80 bytes: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def big_text_chunk(path: Path) -> None:
    """A valid PNG carrying 20 MB of compressed text metadata (an editor's history, a
    large XMP packet): Pillow refuses text chunks over 1 MB unless told otherwise."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (20 << 20), zip=True)
    _photo().save(path, pnginfo=info)


def one_pixel_high(path: Path) -> None:
    """A 64x1 image: any output keeping its aspect is 1 pixel high."""
    _photo(1, 64).save(path)


def very_wide(path: Path) -> None:
    """A 2000x10 panorama strip."""
    _photo(10, 2000).save(path)


def tiny_style(path: Path) -> None:
    """An 8x8 style image."""
    pattern(8, 8, "style").save(path)


MAKERS = {
    "exif_rotated.jpg": exif_rotated,
    "grey16.png": grey16,
    "float.tif": float_tiff,
    "palette_transparent.png": palette_transparent,
    "grey_alpha.png": grey_alpha,
    "rgba_transparent.png": rgba_transparent,
    "animated.gif": animated_gif,
    "cmyk.jpg": cmyk_jpeg,
    "one_bit.png": one_bit,
    "truncated.jpg": truncated_jpeg,
    "truncated.png": truncated_png,
    "empty.png": empty_file,
    "text.jpg": text_file,
    "bomb.png": bomb,
    "big_text.png": big_text_chunk,
    "one_pixel_high.png": one_pixel_high,
    "very_wide.png": very_wide,
    "tiny_style.png": tiny_style,
}


def make(name: str, folder: Path) -> Path:
    path = folder / name
    MAKERS[name](path)
    return path


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus-images")
    target.mkdir(parents=True, exist_ok=True)
    for name in MAKERS:
        print(make(name, target))
