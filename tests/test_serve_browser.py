"""End to end in headless Chromium: `decovlm serve --compare` in a subprocess, driven by Playwright.

Loads the page, uploads a corrupt file (a message must appear), uploads an image, asks, clicks a
word in each model's panel and checks that a relevance image appears (and that a click in one
panel shows the same word in the other); the page is saved as
test-artifacts/serve_explorer.png. Needs Debian's `chromium` and the `playwright` package
(scripts/install_browser_deps.sh); this test installs nothing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_S = 120  # model loading + Gradio start on a busy 2-core machine
STEP_MS = 90_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
]
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="needs playwright (scripts/install_browser_deps.sh)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"decovlm serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(
        f"decovlm serve did not answer on {url} within {STARTUP_S}s:\n{log.read_text()[-3000:]}"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("gradio", reason="needs gradio (pip install gradio)")
    from decovlm.testing import tiny_model

    root = tmp_path_factory.mktemp("serve_browser")
    for name, spec in (("deco", "avgpool2_4"), ("qformer", "qformer2_4")):
        model, processor = tiny_model(spec)
        model.save_pretrained(root / name)
        processor.save_pretrained(root / name)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, "-m", "decovlm", "serve", "--model", str(root / "deco")]
    cmd += ["--compare", str(root / "qformer"), "--port", str(port), "--max-new-tokens", "5"]
    cmd += ["--examples", str(_world(root / "world"))]
    log = root / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_for_server(proc, url, log)
        yield url, root, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def _word_map(page, panel: int) -> str:
    """Click the first word of a panel's answer; return the map's label once the image is shown."""
    word = page.locator(f"#words-{panel} .token.highlighted").first
    word.wait_for(state="visible", timeout=STEP_MS)
    text = word.inner_text().strip()
    word.click()
    image = page.locator(f"#map-{panel} img")
    image.wait_for(state="visible", timeout=STEP_MS)
    page.wait_for_function(
        "el => el.complete && el.naturalWidth > 0", arg=image.element_handle(), timeout=STEP_MS
    )
    page.locator(f"#status-{panel}", has_text=f"Showing '{text}'").wait_for(timeout=STEP_MS)
    return text


def _world(root: Path) -> Path:
    """A one-scene synthetic-world folder (images/ and eval/questions.jsonl), for the examples list."""
    (root / "images").mkdir(parents=True)
    (root / "eval").mkdir()
    _picture().save(root / "images" / "eval_000000.png")
    record = {
        "question_id": "q0",
        "image": "images/eval_000000.png",
        "text": "What colour is the circle?",
    }
    (root / "eval" / "questions.jsonl").write_text(json.dumps(record) + "\n")
    return root


def _picture():
    """A white scene with a red circle and a blue square (a uniform image gives flat maps)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (96, 96), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, 44, 44), fill=(220, 30, 30))
    draw.rectangle((54, 54, 88, 88), fill=(30, 60, 220))
    return image


def test_explorer_in_headless_chromium(server):
    url, root, log = server
    image_path = root / "picture.png"
    _picture().save(image_path)
    corrupt = root / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(STEP_MS)
            try:
                words = _drive(page, url, corrupt, image_path)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "serve_explorer_failure.png"), full_page=True)
                raise
        finally:
            browser.close()
    assert all(words), words
    assert "Traceback" not in log.read_text()


def _drive(page, url: str, corrupt: Path, image_path: Path) -> list[str]:
    """The user's path through the page; returns the clicked words."""
    page.goto(url, wait_until="domcontentloaded", timeout=STEP_MS)
    upload = page.locator("#upload input[type=file]")
    upload.wait_for(state="attached")

    # a synthetic-world example fills the image and the question
    page.locator("#examples input").click()
    page.get_by_role("option", name="eval_000000: What colour is the circle?").click()
    page.locator("#status", has_text="Example eval_000000.png loaded").wait_for()
    page.locator("#preview img").wait_for(state="visible")
    assert page.locator("#question textarea").input_value() == "What colour is the circle?"

    # a corrupt upload: a message in the page, the server keeps running
    upload.set_input_files(str(corrupt))
    page.locator("#status", has_text="not an image").wait_for()
    page.locator(".toast-wrap", has_text="not an image").wait_for()  # and a toast

    page.locator("#upload button[aria-label='Clear']").first.click()
    page.locator("#upload input[type=file]").set_input_files(str(image_path))
    page.locator("#status", has_text="Image loaded").wait_for()
    page.locator("#preview img").wait_for(state="visible")

    page.locator("#question textarea").fill("what colour")
    page.locator("#ask").click()
    for panel in (0, 1):
        page.locator(f"#status-{panel}", has_text="Click a word").wait_for()
    answers = [page.locator(f"#answer-{i} textarea").input_value() for i in (0, 1)]
    assert all(a.strip() for a in answers), answers

    first = _word_map(page, 0)
    # the click shows the same word in the other column too (or says that answer lacks it)
    page.locator("#status-1", has_text=f"'{first}'").wait_for(timeout=STEP_MS)
    words = [first, _word_map(page, 1)]
    gallery = page.locator("#gallery-1 img")
    gallery.first.wait_for(state="visible")
    assert gallery.count() >= 1
    page.locator("#files-0 td.filename[aria-label='maps.npz']").wait_for()
    for close in page.locator(".toast-wrap button[aria-label='Close']").all():
        close.click()  # the corrupt upload's toast would hide part of the page
    page.locator(".toast-item").first.wait_for(state="detached")
    page.screenshot(path=str(ARTIFACTS / "serve_explorer.png"), full_page=True)
    return words
