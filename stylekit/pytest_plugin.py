"""stylekit's pytest fixtures, loaded by pytest in every environment where stylekit is
installed (entry point `pytest11`).

Loading this module must cost nothing: pytest imports it at start-up even in projects that
never use stylekit. So it imports neither torch nor the rest of stylekit; each fixture
imports `stylekit.testing` when a test asks for it.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def stylekit_registry():
    """The installed plugins plus the tiny random backbone (`stylekit.testing.tiny_registry()`)."""
    from stylekit.testing import tiny_registry  # here, not at the top: pytest loads this plugin in every session

    return tiny_registry()


@pytest.fixture
def stylekit_images(tmp_path):
    """(content, style): two small PNG files in `tmp_path` (`stylekit.testing.write_images`)."""
    from stylekit.testing import write_images  # as above: torch only when a fixture is used

    return write_images(tmp_path)


@pytest.fixture
def stylekit_recipe(tmp_path):
    """The path of a recipe in `tmp_path` for the tiny backbone, next to its two images
    (`stylekit.testing.write_recipe` with the default loss terms)."""
    from stylekit.testing import write_recipe  # as above

    return write_recipe(tmp_path)
