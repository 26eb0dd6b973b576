"""benchmarks/quality.py's contact sheets: the photo, the painting (not when it is under
copyright), each peer and each stylekit run of a pair side by side, with their figures. For a
portrait (a content with a box in FACES) each picture's face is shown enlarged under it, so that
the eyes, nose, mouth and chin can be judged at the output's own resolution."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from quality_common import FACES, NOT_SHOWN, Pair

SHEET_MAX_BYTES = 200_000
SHEET_TILE_WIDTH, SHEET_COLUMNS = 240, 5


def font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1: a fixed bitmap font
        return ImageFont.load_default()


def face_box(stem: str, w: int, h: int) -> tuple[int, int, int, int] | None:
    """The face's box in pixels of a w x h picture of this content, or None if it is no portrait."""
    if stem not in FACES:
        return None
    left, top, right, bottom = FACES[stem]
    return round(left * w), round(top * h), round(right * w), round(bottom * h)


def tile(image: Path | None, size: tuple[int, int], tile_w: int, face: tuple[int, int, int, int] | None,
         title: str, lines: list[str]) -> Image.Image:
    """A picture brought to the output's `size` (as the judge sees it), scaled to `tile_w`, with
    its face box enlarged to `tile_w` under it when `face` is given, and its title and figures
    under that. `image` None: a grey tile (a painting under copyright)."""
    w, h = size
    tile_h = round(h * tile_w / w)
    face_h = round((face[3] - face[1]) * tile_w / (face[2] - face[0])) if face else 0
    text_h = 16 * (1 + len(lines)) + 4
    card = Image.new("RGB", (tile_w, tile_h + face_h + text_h), "white")
    draw = ImageDraw.Draw(card)
    if image is not None:
        with Image.open(image) as img:
            picture = img.convert("RGB").resize(size, Image.LANCZOS)
        card.paste(picture.resize((tile_w, tile_h), Image.LANCZOS), (0, 0))
        if face:
            card.paste(picture.crop(face).resize((tile_w, face_h), Image.LANCZOS), (0, tile_h))
    else:
        draw.rectangle((0, 0, tile_w - 1, tile_h - 1), fill=(235, 235, 235))
        draw.multiline_text((8, tile_h // 2 - 16), "style image not shown:\nunder copyright", fill="black", font=font(12))
    draw.text((4, tile_h + face_h + 2), title, fill="black", font=font(13))
    for i, line in enumerate(lines):
        draw.text((4, tile_h + face_h + 18 + 16 * i), line, fill=(60, 60, 60), font=font(12))
    return card


def figure_lines(judge_: dict) -> list[str]:
    return [f"content {judge_['content_dist']:.3f}  struct {judge_['structure']:.3f}",
            f"Gram {judge_['style_dist']:.3f}  SWD {judge_['style_swd']:.3f}"]


def row_title(row: dict) -> str:
    beaten = [key for key, v in row.get("beats", {}).items() if v["passes"]]
    return f"{row['label']}, {row['wall_s']:.0f} s" + (f", beats {'+'.join(beaten)}" if beaten else "")


def contact_sheet(result: dict, pair: Pair, path: Path) -> None:
    """Every picture of the pair, SHEET_COLUMNS to a row; a JPEG under SHEET_MAX_BYTES."""
    size = tuple(result["size_wh"])
    face = face_box(pair.content.stem, *size)
    style_shown = pair.style.stem not in NOT_SHOWN
    make = lambda image, title, lines, with_face=True: tile(image, size, SHEET_TILE_WIDTH, face if with_face else None,
                                                            title, lines)
    # The painting has no face: its tile is as tall as the others' picture alone.
    tiles = [make(pair.content, f"content: {pair.content.stem}", []),
             make(pair.style if style_shown else None, f"style: {pair.style.stem}", [], with_face=False)]
    tiles += [make(Path(p["image"]), f"{p['label']}, ~{p['wall_s']:.0f} s", figure_lines(p["judge"]))
              for p in result["peers"]]
    tiles += [make(Path(row["image"]), row_title(row), figure_lines(row["judge"]))
              for row in result["curve"] + result["recipes"]]
    columns, card_h = min(len(tiles), SHEET_COLUMNS), max(t.height for t in tiles)
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * (SHEET_TILE_WIDTH + 4) - 4, rows * (card_h + 4) - 4), "white")
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % columns) * (SHEET_TILE_WIDTH + 4), (i // columns) * (card_h + 4)))
    path.parent.mkdir(parents=True, exist_ok=True)
    for quality in (85, 75, 65, 55, 45):
        sheet.save(path, quality=quality, optimize=True)
        if path.stat().st_size < SHEET_MAX_BYTES:
            break
    result["sheet"] = {"path": str(path), "style_shown": style_shown, "bytes": path.stat().st_size, "faces": bool(face)}
