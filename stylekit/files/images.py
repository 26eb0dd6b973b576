"""Reading, resizing and writing images; writes are atomic so a crash never leaves half a file."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageColor, ImageOps, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from stylekit.errors import UserError, one_line
from stylekit.files.limits import DEFAULT_MAX_PIXELS
from stylekit.files.reading import NotRegularFile, open_regular
from stylekit.files import sizes
from stylekit.files.sizes import human


#: What Pillow raises for a file that is not an image it can decode.
UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)


def unreadable(exc: BaseException, path: str | None = None) -> str:
    """The message for an image Pillow could not decode (`exc`, one of UNREADABLE)."""
    # Pillow's own words where they say more than the error's type (a truncated file).
    why = type(exc).__name__ if isinstance(exc, UnidentifiedImageError) or not str(exc) else str(exc)
    return f"not a readable image ({why}){f': {path}' if path else ''} - save it again as PNG or JPEG"


def open_rgb(path: str, spec=None, warn: bool = False) -> Image.Image:
    """The image at `path` as 8-bit RGB, as people expect to see it: EXIF orientation
    applied, 16-bit and float pixels scaled (not clipped), transparency composited on
    `spec.background`, an animation's first frame (with a warning on stderr when `warn`).
    `spec` is the recipe's images section (background, max_pixels); None: the defaults.
    Decoded in full, so that a truncated file fails here, not mid-run. Only a regular file
    is opened (`stylekit.files.reading`): a FIFO or a device is refused, never waited on."""
    if not os.path.exists(path):
        raise UserError(f"image file not found: {path}")
    if os.path.isdir(path):
        raise UserError(f"this is a folder, not an image file: {path}")
    try:
        with _opened(path, spec) as img:
            if warn and getattr(img, "n_frames", 1) > 1:
                print(f"warning: {one_line(path)}: an animated image with {img.n_frames} frames - using the first frame",
                      file=sys.stderr)
            img.load()
            return rgb_of(img, spec)
    except UserError:
        raise
    except NotRegularFile as exc:
        raise UserError(f"{exc.strerror}: {path} - give an image file") from None
    except MemoryError:  # the estimate in _opened let it through, but the memory went meanwhile
        raise UserError(f"not enough memory to decode {path} - make it smaller, or free memory") from None
    except UNREADABLE as exc:
        if isinstance(exc, OSError) and exc.errno is not None:  # the file, not its contents (permissions)
            raise UserError(f"cannot read {path} ({exc.strerror}) - check that you may read it") from None
        if "MAX_TEXT" in str(exc):  # Pillow's limits on PNG text chunks, raised in _opened as far as is sane
            raise UserError(f"{path} holds more than {TEXT_LIMIT >> 20} MB of text metadata (PNG text chunks), more "
                            f"than stylekit reads - save it again without the metadata") from None
        raise UserError(unreadable(exc, path)) from None


def rgb_of(img: Image.Image, spec=None) -> Image.Image:
    """An image given in memory (a PIL image) as 8-bit RGB, exactly as `open_rgb` reads a
    file's pixels, so that an image gives the same result in memory as from disk."""
    return _as_rgb(ImageOps.exif_transpose(img), getattr(spec, "background", "white"))


#: The text metadata (PNG text chunks) read from an image: Pillow's own limit on all of an
#: image's text together (PngImagePlugin.MAX_TEXT_MEMORY). Pillow's default for one
#: compressed chunk is 1 MB, which refuses real files (a large XMP packet, an editor's
#: history); allowing one chunk what Pillow allows them all costs no more memory.
TEXT_LIMIT = 64 << 20


@contextlib.contextmanager
def _opened(path: str, spec):
    """Image.open of the regular file `path` with stylekit's pixel limit instead of Pillow's
    DecompressionBombError, refused before decoding where it would not fit in the memory
    free, and with Pillow's limit on one PNG text chunk raised to TEXT_LIMIT."""
    from PIL import PngImagePlugin  # Pillow's PNG plugin, loaded on first use: only to raise its text limit

    limit = getattr(spec, "max_pixels", DEFAULT_MAX_PIXELS)
    saved_text = PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY
    PngImagePlugin.MAX_TEXT_CHUNK = PngImagePlugin.MAX_TEXT_MEMORY = TEXT_LIMIT  # text chunks are read as late as load()
    try:
        with open_regular(path) as handle:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # checked below, before decoding
                try:
                    img = Image.open(handle)
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
            with img:
                if img.width * img.height > limit:
                    raise UserError(f"{path} is {img.width}x{img.height}, {img.width * img.height:,} pixels, more than "
                                    f"images.max_pixels ({limit:,}) - make it smaller, or raise images.max_pixels "
                                    f"if you trust the file")
                _check_memory(path, img)
                yield img
    finally:
        PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY = saved_text


def decoding_bytes(img: Image.Image) -> int:
    """About the memory that decoding `img` and converting it to RGB take at their peak:
    Pillow keeps 1 byte a pixel for 1-bit, greyscale and palette images, 2 for 16-bit, 4 for
    the rest (RGB is padded to 4), and the conversion adds up to three 4-byte copies
    (composited on the background, then RGB); 16-bit and float greyscale are scaled in
    float64 (`_high_depth_to_l`), two 8-byte arrays more."""
    decoded = 1 if img.mode in ("1", "L", "P") else 2 if img.mode.startswith("I;16") else 4
    scaled = 16 if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F") else 0
    return img.width * img.height * (decoded + 12 + scaled)


def _check_memory(path: str, img: Image.Image) -> None:
    """Refuse to decode what cannot be held: past the memory free, decoding ends in a
    MemoryError or, on Linux, with the process killed by the kernel, which says nothing."""
    needed = decoding_bytes(img)
    free = sizes.available_memory(torch.device("cpu"))
    if free is not None and needed > free:
        raise UserError(f"{path} is {img.width}x{img.height}: decoding it takes about {human(needed)}, more than the "
                        f"{human(free)} of memory free - make it smaller, or free memory")


def _as_rgb(img: Image.Image, background: str) -> Image.Image:
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        img = _high_depth_to_l(img)
    if img.mode == "P" and "transparency" in img.info or img.mode in ("PA", "LA", "La", "RGBa", "RGBA"):
        img = img.convert("RGBA")
    elif img.mode in ("L", "RGB") and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        base = Image.new("RGBA", img.size, ImageColor.getrgb(background))
        return Image.alpha_composite(base, img).convert("RGB")
    return img.convert("RGB")


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16/32-bit integer or float greyscale as 8-bit: integers are read as 0..65535 (16-bit
    files) and floats as 0..1, scaled rather than clipped at 255 as Pillow's convert does."""
    pixels = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        top = 1.0 if pixels.max(initial=0) <= 1.0 else 255.0 if pixels.max(initial=0) <= 255.0 else pixels.max()
    else:
        top = 65535.0 if pixels.max(initial=0) <= 65535 else float(2**32 - 1)
    scaled = np.clip(np.nan_to_num(pixels / top), 0, 1) * 255
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")


def output_size(content: Image.Image, width: int | None, height: int | None, default_width: int = 512) -> tuple[int, int]:
    """(height, width) of the output; one given side keeps the content image's aspect ratio."""
    if width and height:
        return height, width
    aspect = content.height / content.width
    if height:
        return height, max(1, round(height / aspect))
    width = width or default_width
    return max(1, round(width * aspect)), width


def style_size(style: Image.Image, out_hw: tuple[int, int], scale: float, fit: str) -> tuple[int, int]:
    """(height, width) for a style image: the output's pixel count x scale^2, or stretched."""
    h, w = out_hw
    if fit == "stretch":
        return max(1, round(h * scale)), max(1, round(w * scale))
    k = scale * ((h * w) / (style.width * style.height)) ** 0.5
    return max(1, round(style.height * k)), max(1, round(style.width * k))


# Conversions written here rather than taken from torchvision.transforms: importing
# torchvision (its models and ops) added about 1 s to every run's start-up on a 2-core CPU.


def to_tensor(img: Image.Image, hw: tuple[int, int]) -> torch.Tensor:
    """(1, 3, H, W) float RGB in [0, 1], resized with antialiasing."""
    resized = img.convert("RGB").resize((hw[1], hw[0]), Image.BICUBIC)
    pixels = torch.frombuffer(bytearray(resized.tobytes()), dtype=torch.uint8)
    return (pixels.view(hw[0], hw[1], 3).permute(2, 0, 1).float() / 255).unsqueeze(0)


def to_image(tensor: torch.Tensor) -> Image.Image:
    """The (1, 3, H, W) or (3, H, W) RGB tensor in [0, 1] as an 8-bit image, rounded."""
    rgb = tensor.detach().float().clamp(0, 1).squeeze(0).cpu()
    pixels = (rgb * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
    return Image.fromarray(pixels.numpy())


#: The PNG text chunk that names the output image a file beside it was written for (an
#: intermediate image, a plot): how a later run knows the file is stylekit's to replace.
MARK = "stylekit-output"


def save_atomic(img: Image.Image, path: str | Path, mark: str | None = None) -> None:
    """Save an image all or nothing; the format follows the suffix (.png, .jpg). `mark`
    (PNG only) is kept in the file as the `MARK` text chunk."""
    _atomic_write(path, "wb", image_writer(img, path, mark))


def image_writer(img: Image.Image, path: str | Path, mark: str | None = None):
    """The function that writes `img` to an open binary file in the format of `path`."""
    if Path(path).suffix.lower() != ".png":
        return lambda handle: img.save(handle, format="JPEG", quality=95)
    info = None
    if mark is not None:
        info = PngInfo()
        info.add_text(MARK, mark)
    return lambda handle: img.save(handle, format="PNG", pnginfo=info)


def marked_for(path: Path) -> str | None:
    """The `MARK` of the PNG at `path` (read from its header, nothing decoded); None when it
    has none or is not a PNG that can be opened."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                value = img.info.get(MARK) if img.format == "PNG" else None
    except Exception:  # anything that is not a readable PNG is not one of stylekit's
        return None
    return value if isinstance(value, str) else None


def write_text_atomic(text: str, path: str | Path) -> None:
    _atomic_write(path, "w", lambda handle: handle.write(text))


def write_bytes_atomic(data: bytes, path: str | Path) -> None:
    _atomic_write(path, "wb", lambda handle: handle.write(data))


TEMP_MARK = ".stylekit-tmp"


def temp_name(path: Path) -> Path:
    """The temporary file a write of `path` goes through: hidden, beside it, and named so
    that one left by a killed process is recognised (and removed) by the next write."""
    return path.with_name(f".{path.name}.{os.getpid()}{TEMP_MARK}")


def remove_stale_temps(path: Path) -> None:
    """Remove temporary files of earlier writes of `path` whose process is gone."""
    for stale in path.parent.glob(f".{glob_escape(path.name)}.*{TEMP_MARK}"):
        pid = stale.name[len(path.name) + 2: -len(TEMP_MARK)]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            with contextlib.suppress(OSError):
                stale.unlink()


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process, or unknown: leave its file alone
    return True


def _atomic_write(path: str | Path, mode: str, write) -> None:
    """Write to a temporary file beside `path`, then rename over it, so a crash or Ctrl-C
    never leaves a half-written file and never destroys the previous one."""
    write_together([(Path(path), mode, write)])


def write_together(files: list[tuple[Path, str, object]]) -> None:
    """Write several files (path, mode, write(handle)) all or none: each goes to its own
    temporary file first, and only when every one is complete are they renamed into place,
    in the order given. A failure while writing (a full disk, an exception in `write`)
    leaves every path as it was; no temporary file is left behind, and an OSError names
    the file it concerns."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, mode, write in files:
            staged.append((_staged(Path(path), mode, write), Path(path)))
        while staged:
            tmp, path = staged[0]
            try:
                os.replace(tmp, path)
            except OSError as exc:
                _name(exc, path, tmp)
                raise
            staged.pop(0)
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _staged(path: Path, mode: str, write) -> Path:
    """`write` into the temporary file of `path`; returns it, complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # the umask applies, as for any file
    except OSError as exc:
        _name(exc, path, tmp)
        raise
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            write(handle)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            _name(exc, path, tmp)
        raise
    return tmp


def _name(exc: OSError, path: Path, tmp: Path) -> None:
    """Name the file the user knows in `exc`: the target, not the hidden temporary file; and
    a full disk's error, which names no file at all, names it too."""
    if exc.filename is None or exc.filename == str(tmp):
        exc.filename, exc.filename2 = str(path), None
