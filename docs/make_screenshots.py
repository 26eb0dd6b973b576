"""Takes the README's two pictures from real runs of the shipped recipes:

- docs/images/live-page.jpg: `stylekit run recipes/gatys.toml --live` (at 256 px, so it
  moves on a CPU) in headless Chromium, some steps in, before its Stop button is pressed;
- docs/images/progress-bar.png: `stylekit run recipes/fast.toml` in a tmux terminal,
  its screen read with capture-pane and drawn as a terminal by Chromium.

    .venv/bin/python docs/make_screenshots.py     # needs tmux and chromium (apt-get install)

Minutes on a CPU: each run goes until the picture is due, then is stopped.
"""

from __future__ import annotations

import html
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
WORK = ROOT / "out" / "screenshots"
STYLEKIT = str(Path(sys.executable).with_name("stylekit"))


def chromium() -> str:
    path = os.environ.get("STYLEKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        sys.exit("no Chromium: apt-get install chromium (or set STYLEKIT_CHROMIUM)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def live_page(browser, min_step: int = 25) -> None:
    port = free_port()
    run = subprocess.Popen([STYLEKIT, "run", str(ROOT / "recipes" / "gatys.toml"), "--live", "--live-port", str(port),
                            "--quiet", "--set", "output.width=256", "-o", str(WORK / "live.png")], cwd=ROOT)
    try:
        page = browser.new_page(viewport={"width": 1100, "height": 640}, color_scheme="light")
        for _ in range(600):
            try:
                page.goto(f"http://127.0.0.1:{port}/")
                break
            except Exception:
                if run.poll() is not None:
                    sys.exit("the live run ended before its page loaded")
                time.sleep(0.5)
        page.wait_for_function(f"parseInt(document.querySelector('.step')?.textContent) >= {min_step}", timeout=600_000)
        page.wait_for_timeout(800)  # the image and the curves of that step
        shot = page.screenshot(full_page=True)
        save_jpeg(shot, IMAGES / "live-page.jpg", width=1000)
        page.locator("button.stop").click()
        run.wait(timeout=120)
    finally:
        if run.poll() is None:
            run.terminate()


def progress_bar(browser, min_step: int = 16) -> None:
    session = "stylekit-screenshot"
    subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    shown = "stylekit run recipes/fast.toml -o out/screenshots/fast.png"
    command = f"{STYLEKIT} {shown.removeprefix('stylekit ')}; sleep 600"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "118", "-y", "6", "-c", str(ROOT), command], check=True)
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
            found = re.search(r"\| (\d+)/\d+ \[", screen)
            if found and int(found.group(1)) >= min_step:
                break
            time.sleep(1)
        else:
            sys.exit("the progress bar never reached the step to show")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    lines = screen.replace(f"{ROOT}/", "").rstrip("\n").splitlines()  # paths as the reader's checkout has them
    command_line = f"$ {shown}"
    body = html.escape("\n".join([command_line, *lines]).rstrip())
    page = browser.new_page(viewport={"width": 1000, "height": 100}, device_scale_factor=1)
    page.set_content("<body style='margin:0;background:#1e1e1e'><pre id='t' style='margin:0;padding:12px 14px;"
                     "color:#ddd;font:14px/1.35 \"DejaVu Sans Mono\",monospace;white-space:pre;display:inline-block'>"
                     f"{body}</pre></body>")
    shot = page.locator("#t").screenshot()
    (IMAGES / "progress-bar.png").write_bytes(shot)


def save_jpeg(png: bytes, path: Path, width: int) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.save(path, "JPEG", quality=82, optimize=True)


def main() -> None:
    from playwright.sync_api import sync_playwright

    WORK.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium())
        progress_bar(browser)
        live_page(browser)
        browser.close()
    for name in ("live-page.jpg", "progress-bar.png"):
        print(f"{IMAGES / name}: {(IMAGES / name).stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
