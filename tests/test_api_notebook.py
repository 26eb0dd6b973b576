"""The API as a notebook uses it: a Result shown in a cell, the common settings as keyword
arguments, a callback that raises KeyboardInterrupt, and a run stopped in an early stage."""

import io

from PIL import Image

import stylekit
from stylekit.testing import tiny_registry


def test_a_result_shows_as_one_line_and_as_its_image(stylekit_recipe):
    result = stylekit.stylize(stylekit.load(stylekit_recipe, {"run.steps": 2}, registry=tiny_registry()))
    shown = repr(result)
    # A line that says how the run ended, not the tensor and history the dataclass repr dumped.
    assert shown.startswith("<Result finished: 2/2 steps, 64x48, ") and shown.endswith(" s>")
    assert len(shown) < 100 and "tensor" not in shown
    png = result._repr_png_()
    assert png.startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(png)).tobytes() == result.image.tobytes()
