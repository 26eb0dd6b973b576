"""Reading, resizing and writing images; writes are atomic so a crash never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from .errors import UserError


def check_image(path: str) -> str | None:
    """None when `path` is a readable image, else the reason it is not."""
    if not os.path.exists(path):
        return "image file not found"
    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        return f"not a readable image ({type(exc).__name__})"
    return None


def open_rgb(path: str) -> Image.Image:
    """The image at `path`, decoded in full (a truncated file fails here, not mid-run), as RGB."""
    if not os.path.exists(path):
        raise UserError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"not a readable image ({type(exc).__name__}): {path}") from None


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


def save_atomic(img: Image.Image, path: str | Path) -> None:
    """Save an image all or nothing; the format follows the suffix (.png, .jpg)."""
    png = Path(path).suffix.lower() == ".png"
    _atomic_write(path, "wb", lambda handle: img.save(handle, format="PNG" if png else "JPEG", **({} if png else {"quality": 95})))


def write_text_atomic(text: str, path: str | Path) -> None:
    _atomic_write(path, "w", lambda handle: handle.write(text))


def write_bytes_atomic(data: bytes, path: str | Path) -> None:
    _atomic_write(path, "wb", lambda handle: handle.write(data))


def _atomic_write(path: str | Path, mode: str, write) -> None:
    """Write to a temporary file beside `path`, then rename over it, so a crash or Ctrl-C
    never leaves a half-written file and never destroys the previous one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
