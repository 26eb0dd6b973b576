"""Shared helpers: fake third-party distributions installed on sys.path for one test, and a
live page's server."""

import textwrap
from pathlib import Path

import pytest

from stylekit.commands.live import LiveServer


@pytest.fixture
def install_dist(tmp_path, monkeypatch):
    """install_dist(package, module_source, entry_points={name: module}) -> site folder.

    Writes a module and a `<package>-1.0.dist-info` with a `stylekit` entry point into a
    folder on sys.path: exactly what `pip install` leaves behind for a plugin package.
    """
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    monkeypatch.syspath_prepend(str(site))

    def install(package: str, source: str, entry_points: dict[str, str] | None = None, version: str = "1.0") -> Path:
        module = package.replace("-", "_")
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{module}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        points = entry_points or {package.removeprefix("stylekit-"): module}
        (info / "entry_points.txt").write_text("[stylekit]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
        return site

    return install


@pytest.fixture
def live():
    """A live page's server on a free loopback port (tests/test_live.py, test_video_live.py)."""
    server = LiveServer("127.0.0.1", 0)
    server.start()
    yield server
    server.close()
