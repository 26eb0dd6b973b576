"""The live page in a real browser: headless Chromium (the system's, driven by Playwright)
loads the page during a real run on the CPU with the tiny backbone, sees the image change
between two screenshots, presses Stop, and the run ends with its image and record. A batch
of images whose file names hold quotes, angle brackets, spaces, '#' and non-ASCII letters
shows every image, and no name runs as script.

Skipped only where no Chromium can be found; in CI (CI=true) that is a failure: `./test`
installs Debian's chromium first.
"""

import io
import json
import os
import shutil
import socket
import threading
import time

import pytest

from stylekit.testing import TINY_LOSSES, TINY_RECIPE_HEAD, run_cli, write_recipe


def chromium_path() -> str | None:
    return os.environ.get("STYLEKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        message = "no Chromium found (apt-get install chromium, or set STYLEKIT_CHROMIUM) - ./test installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright  # in the test extra

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True)
        yield browser
        browser.close()


BROKEN_IMAGE_WATCH = """
window.brokenImages = [];
setInterval(() => {
  for (const img of document.images) {
    if (img.checkVisibility() && img.complete && !img.naturalWidth) window.brokenImages.push(img.className || img.alt);
  }
}, 20);
"""


def test_live_page_shows_the_run_and_stops_it(tmp_path, browser):
    # Many steps: the run goes on until the page stops it (the join below bounds the test).
    recipe = write_recipe(tmp_path, TINY_LOSSES, TINY_RECIPE_HEAD.replace("steps = 5", "steps = 100000"))
    port = free_port()
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(result=run_cli(
        "run", str(recipe), "--live", "--live-port", str(port))))
    thread.start()
    try:
        page = browser.new_page()
        # Every 20 ms from the page's first script on: a shown image that is complete but has
        # no pixels is a broken-image icon (the first frame used to be one, before any image).
        page.add_init_script(BROKEN_IMAGE_WATCH)
        deadline = time.monotonic() + 30
        while True:  # the server starts once the recipe is loaded
            try:
                page.goto(f"http://127.0.0.1:{port}/")
                break
            except Exception:
                assert thread.is_alive(), f"the run ended before the page loaded: {outcome}"
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        image = page.locator("img.current")
        page.wait_for_function("document.querySelector('img.current')?.dataset.version >= 1", timeout=20000)
        first_version = image.get_attribute("data-version")
        first = image.screenshot()
        page.wait_for_function(f"document.querySelector('img.current').dataset.version > {first_version}", timeout=20000)
        page.wait_for_timeout(300)  # two more samples at least
        second = image.screenshot()
        assert first != second, "the image on the page did not change while the run went on"
        assert page.locator(".inputs img").count() == 2  # the content and the style image
        assert page.locator("svg.curves polyline").count() == 4  # total, content, gram, tv
        assert "step" in page.locator(".stats").inner_text()

        assert page.evaluate("window.brokenImages") == [], "a broken-image icon was shown"
        assert page.locator(".waiting").count() == 0  # the placeholder went with the first image

        page.locator("button.stop").click()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the run did not end after Stop"
        page.wait_for_function("document.querySelector('.status').textContent === 'stopped'", timeout=5000)
        assert page.locator(".eta").inner_text() == "stopped"  # not the time left it had before Stop
    finally:
        if thread.is_alive():  # a failed check above: end the run the same way before leaving
            import urllib.request

            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/stop", method="POST",
                                                          headers={"X-Stylekit-Stop": "1"}), timeout=5)
            thread.join(timeout=60)
    status, _, err = outcome["result"]
    assert status == 0, err
    assert "stopped at step" in err
    record = json.loads((tmp_path / "out" / "result.json").read_text())
    assert 0 < len(record["losses"]) < 100000
    assert (tmp_path / "out" / "result.png").stat().st_size > 0


# Each name once broke the page: the quotes ran as script (the name was written into
# innerHTML), the others 404ed (the key was not percent-encoded in the image's URL).
# (The first name's handler does not even compile once '.style/content.jpg' follows it; the
# second's is clean script.)
HOSTILE_NAMES = ['x" onerror="alert(1).png', 'y" onerror="alert(2)" z=".png', "<b>.png", "a b#1.png", "Zoë.png"]


def test_batch_page_shows_every_image_and_runs_no_name_as_script(tmp_path, browser):
    from stylekit.commands.batch import run_batch
    from stylekit.commands.live import LiveServer
    from stylekit.testing import pattern, tiny_registry, write_recipe

    (tmp_path / "photos").mkdir()
    for i, name in enumerate(HOSTILE_NAMES):
        pattern(32, 40, "content").rotate(90 * i).save(tmp_path / "photos" / name)
    recipe = write_recipe(tmp_path / "recipe")
    with LiveServer("127.0.0.1", 0) as live:
        page = browser.new_page()
        dialogs, errors = [], []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(live.url)
        page.wait_for_function("document.getElementById('connection').textContent === 'connected'", timeout=10000)
        # The page polls: the runs are watched, so their images are sampled.
        assert run_batch(str(recipe), [str(tmp_path / "photos")], [], None, tmp_path / "out", {}, tiny_registry(),
                         stream=io.StringIO(), live=live) == 0
        page.wait_for_function(f"document.querySelectorAll('.status').length === {len(HOSTILE_NAMES)} && "
                               "[...document.querySelectorAll('.status')].every((s) => s.textContent === 'finished')",
                               timeout=10000)
        # Every image of every panel: the current one, the content and the style image.
        shown = "[...document.images].every((img) => img.complete && img.naturalWidth > 0)"
        try:
            page.wait_for_function(f"document.images.length === {3 * len(HOSTILE_NAMES)} && {shown}", timeout=10000)
        except Exception:
            pass  # said below, after what matters more
        assert dialogs == [] and errors == [], f"a file name ran as script: {dialogs} {errors}"
        assert page.evaluate("document.querySelectorAll('.label *, [onerror]').length") == 0  # '<b>' is no element
        labels = page.locator(".run h2 .label").all_inner_texts()
        assert sorted(labels) == sorted(f"{name} + style.png" for name in HOSTILE_NAMES)
        broken = page.evaluate("[...document.images].filter((img) => !img.naturalWidth).map((img) => img.src)")
        assert page.evaluate("document.images.length") == 3 * len(HOSTILE_NAMES) and not broken, \
            f"images that did not load: {broken}"
