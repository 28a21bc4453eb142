"""`pipeline view`: the local episode page, served on 127.0.0.1 and looked at in a real headless Chromium."""

from __future__ import annotations

import ctypes.util
import io
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.browse.viewer import HOST, Viewer
from pipeline.configs.browse import ViewConfig
from pipeline.dataset import open_dataset
from pipeline.errors import PipelineError

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def _get(url: str, timeout: float = 60) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


@pytest.fixture
def viewer(sample_dataset):
    served = Viewer(ViewConfig(str(sample_dataset), config="babyai-go-to", port=0)).start()
    yield served
    served.stop()


def test_page_json_and_frames_of_an_episode(sample_dataset, viewer):
    assert viewer.server.server_address[0] == HOST == "127.0.0.1"
    base = f"http://{HOST}:{viewer.port}"
    episode = open_dataset(str(sample_dataset)).config("babyai-go-to").episode(2)
    status, kind, body = _get(f"{base}/episode/2")
    page = body.decode()
    assert status == 200 and kind.startswith("text/html")
    assert '<h1 id="title">babyai-go-to episode 2</h1>' in page and f'<b id="seed">{episode.seed}</b>' in page
    assert (
        page.count('<tr id="s') == episode.length
        and f'<b id="mission">{episode.columns["text_observations"][0]}' in page
    )
    assert 'href="/episode/1"' in page and 'href="/episode/3"' in page  # previous / next
    status, _, body = _get(f"{base}/episode/2.json")
    document = json.loads(body)
    assert (
        status == 200 and document["seed"] == episode.seed and document["actions"] == episode.actions.tolist()
    )
    np.testing.assert_array_equal(np.asarray(document["rewards"], dtype=np.float32), episode.rewards)
    status, kind, body = _get(f"{base}/frame/2/{episode.length - 1}.png")
    image = Image.open(io.BytesIO(body))
    assert status == 200 and kind == "image/png" and image.width >= 100 and np.asarray(image).std() > 0
    first = Image.open(io.BytesIO(_get(f"{base}/frame/2/0.png")[2]))
    assert not np.array_equal(
        np.asarray(first), np.asarray(image)
    )  # the steps differ (and the caption says which)
    assert _get(f"{base}/")[2].decode().count("episode 0</h1>") == 1  # the first episode by default
    for path, message in [
        (f"/frame/2/{episode.length}.png", "past the drawn frames"),
        ("/episode/999", "has no episode 999"),
        ("/episode?id=x", "episode id must be a number"),
        ("/etc/passwd", "no page /etc/passwd"),
    ]:
        status, _, body = _get(base + path)
        assert status == 404 and message in body.decode(), (path, body)


def test_mujoco_frames_need_gl_and_the_page_shows_steps_without_them(sample_dataset):
    served = Viewer(ViewConfig(str(sample_dataset), config="mujoco-hopper", port=0, max_frames=5)).start()
    try:
        base = f"http://{HOST}:{served.port}"
        assert _get(f"{base}/episode/0")[0] == 200
        status, _, body = _get(f"{base}/frame/0/0.png")
        if ctypes.util.find_library("OSMesa") or os.environ.get("MUJOCO_GL"):
            assert status == 200 and Image.open(io.BytesIO(body)).size[0] == 128
            assert _get(f"{base}/frame/0/5.png")[0] == 404  # --max-frames 5: steps 0..4 drawn
        else:
            assert status == 404 and "OpenGL" in body.decode()
    finally:
        served.stop()


def test_refused_before_serving_and_stopped_cleanly(sample_dataset):
    with pytest.raises(PipelineError, match="has no episode 77"):
        Viewer(ViewConfig(str(sample_dataset), config="atari-breakout", episode=77, port=0))
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PipelineError, match=f"port {port} on 127.0.0.1 is in use: pick another --port"):
            Viewer(ViewConfig(str(sample_dataset), config="atari-breakout", port=port))
    with pytest.raises(PipelineError, match=r"--port must be in 0\.\.65535, got 70000"):
        ViewConfig(str(sample_dataset), config="atari-breakout", port=70000)
    never = Viewer(ViewConfig(str(sample_dataset), config="atari-breakout", port=0))
    never.stop()  # before serving: returns at once
    served = Viewer(ViewConfig(str(sample_dataset), config="atari-breakout", port=0)).start()
    assert _get(f"http://{HOST}:{served.port}/episode/0")[0] == 200
    served.stop()
    served.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{HOST}:{served.port}/episode/0", timeout=5)


def test_the_command_serves_until_ctrl_c(sample_dataset):
    command = [sys.executable, "-m", "pipeline.cli", "view", str(sample_dataset), "--config", "babyai-go-to"]
    process = subprocess.Popen(
        [*command, "--port", "0", "--episode", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 120)
        assert ready, "no URL printed within 120 s"
        line = process.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        assert url.startswith(f"http://{HOST}:") and url.endswith("/episode/1")
        assert "babyai-go-to episode 1" in _get(url)[2].decode()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill() if process.poll() is None else None
    assert process.returncode == 0 and "stopped" in out, err[-2000:]
    bad = subprocess.run([*command, "--episode", "99"], capture_output=True, text=True, timeout=120)
    assert (
        bad.returncode == 2
        and len(bad.stderr.strip().splitlines()) == 1
        and "has no episode 99" in bad.stderr
    )


def _chromium() -> str:
    """Debian's Chromium (`make install` installs it when it can); skip, saying so, without it."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if found is None:
        pytest.skip("chromium is missing: `make install` installs it as root (apt-get install chromium)")
    return found


def _browse(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        timeout=120,
    )


def test_a_real_browser_shows_the_episode(viewer, sample_dataset, tmp_path):
    chromium = _chromium()
    episode = open_dataset(str(sample_dataset)).config("babyai-go-to").episode(2)
    url = f"http://{HOST}:{viewer.port}/episode/2"
    dom = _browse(chromium, tmp_path / "profile-dom", "--virtual-time-budget=10000", "--dump-dom", url)
    page = dom.stdout.decode()
    assert dom.returncode == 0 and "babyai-go-to episode 2</h1>" in page, dom.stderr[-2000:]
    assert page.count('<tr id="s') == episode.length and f"{episode.seed}" in page
    assert '<tr id="s0" class="now">' in page  # the script ran: step 0 is highlighted
    assert '<img id="frame" src="/frame/2/0.png"' in page  # loaded: a failed one is replaced by its reason
    shot = tmp_path / "page.png"
    done = _browse(chromium, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1200,900", url)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (900, 1200)
    frame_area = pixels[110:400, 10:290]  # the frame panel, left of the plots
    not_white = (frame_area < 240).any(axis=-1).mean()
    assert not_white > 0.5 and len(np.unique(frame_area.reshape(-1, 3), axis=0)) > 5  # the grid, drawn
    plots = pixels[110:560, 330:910]
    assert len(np.unique(plots.reshape(-1, 3), axis=0)) > 5  # the reward, return and action lines
