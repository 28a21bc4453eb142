"""`pipeline view`: a small local page showing a config's episodes, frames beside actions and rewards.

The standard library's threading HTTP server, bound to 127.0.0.1 only, serves:
- `/` and `/episode/<id>`: the episode's page, rendered on the server (no script needed to see it):
  its metadata, navigation (previous/next, nearby ids, go to an id), the frame of the chosen step with
  a slider, an SVG plot of rewards, return so far and actions, and a table of every step;
- `/frame/<id>/<t>.png`: the frame of step t, drawn by re-simulating the episode with
  `pipeline.browse.render.draw_episodes` (Atari as played, BabyAI minigrid's drawing, MuJoCo/Meta-World via
  OSMesa); without GL the page says why and shows actions and rewards alone;
- `/episode/<id>.json`: the same episode as JSON (metadata, actions, rewards).

Frames are drawn once per episode, under one lock (an env is not shared between threads), and the
last few episodes' frames are kept. Every client socket has a timeout, so a stalled browser cannot
hold a thread; `stop()` shuts the server down and closes its socket.
"""

from __future__ import annotations

import errno
import html
import io
import json
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np

from pipeline.browse.render import CLIP_MUJOCO_SIZE, draw_episodes
from pipeline.configs.browse import ViewConfig
from pipeline.dataset import DatasetConfig, EpisodeData, open_dataset
from pipeline.errors import PipelineError
from pipeline.format.columns import REWARDS, TEXT_OBSERVATIONS
from pipeline.suites import get_suite

log = logging.getLogger(__name__)
HOST = "127.0.0.1"
CLIENT_TIMEOUT_S = 30.0
"""A client that sends nothing for this long is dropped."""
CACHED_EPISODES = 4
NEARBY = 10
"""Episode ids listed on each side of the shown one."""
PLOT_W, PLOT_H = 560, 120


@dataclass(frozen=True)
class Frames:
    """An episode's drawn frames as PNG bytes, or why there are none."""

    pngs: tuple[bytes, ...]
    missing: str | None = None


class Viewer:
    """The server of one config's episodes; checks dataset, config, episode and port when built."""

    def __init__(self, request: ViewConfig) -> None:
        self.request = request
        self.config: DatasetConfig = open_dataset(request.data_dir).config(request.config)
        ids = self.config.episode_ids
        if not ids:
            raise PipelineError(f"{request.config} holds no episode to view")
        self.first = ids[0] if request.episode is None else self.config.info(request.episode).episode_id
        self._frames: OrderedDict[int, Frames] = OrderedDict()
        self._draw_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._serving = False
        try:
            self.server = ThreadingHTTPServer((HOST, request.port), _handler(self))
        except OSError as exc:
            cause = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be opened ({exc.strerror})"
            raise PipelineError(
                f"port {request.port} on {HOST} {cause}: pick another --port (0 for any free one)"
            ) from None
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{HOST}:{self.port}/episode/{self.first}"

    # --- lifecycle ---------------------------------------------------------------------------
    def serve_forever(self) -> None:
        """Serve in this thread until `stop()` (another thread) or Ctrl-C."""
        self._serving = True
        self.server.serve_forever(poll_interval=0.2)

    def start(self) -> Viewer:
        """Serve in a background thread (tests, notebooks); `stop()` ends it."""
        self._serving = True
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.2,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice, and before serving started."""
        if self._serving:
            self._serving = False
            self.server.shutdown()  # returns once the loop has seen it (within its 0.2 s poll)
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # --- content -----------------------------------------------------------------------------
    def frames(self, episode_id: int) -> Frames:
        """The episode's frames, drawn on first use (one episode at a time) and kept for a while."""
        with self._draw_lock:
            if episode_id not in self._frames:
                self._frames[episode_id] = self._draw(episode_id)
                while len(self._frames) > CACHED_EPISODES:
                    self._frames.popitem(last=False)
            self._frames.move_to_end(episode_id)
            return self._frames[episode_id]

    def _draw(self, episode_id: int) -> Frames:
        config, info = self.config, self.config.info(episode_id)
        (shard,) = [s for s in config.manifest.shards if s.path == info.shard]
        selection = [(shard, info.row, shard.episodes[info.row])]
        try:
            drawn = draw_episodes(
                config.location,
                config.spec,
                config.manifest,
                selection,
                self.request.max_frames,
                CLIP_MUJOCO_SIZE,
            )
        except PipelineError as exc:  # no GL for MuJoCo: the page shows actions and rewards alone
            return Frames((), str(exc))
        except Exception as exc:  # a broken env costs the frames, never the page
            log.warning("cannot draw episode %d of %s: %s", episode_id, config.name, exc)
            return Frames((), f"the episode could not be re-simulated ({type(exc).__name__}: {exc})")
        pngs = []
        for image in drawn.images:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            pngs.append(buffer.getvalue())
        missing = None
        if drawn.not_reproduced:
            missing = "the re-simulation leaves the stored episode (see `pipeline replay`): frames show it"
        return Frames(tuple(pngs), missing)

    def episode_json(self, episode: EpisodeData) -> dict:
        return {
            "config": episode.config,
            "episode_id": episode.episode_id,
            "split": episode.split,
            "seed": episode.seed,
            "length": episode.length,
            "return": episode.episode_return,
            "success": episode.success,
            "actions": np.asarray(episode.actions).tolist(),
            REWARDS: np.asarray(episode.rewards, dtype=np.float64).tolist(),
        }

    def page(self, episode_id: int) -> str:
        return render_page(self.config, self.config.episode(episode_id), self.request.max_frames)


def _handler(viewer: Viewer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = CLIENT_TIMEOUT_S
        server_version = "jat-pipeline-view"

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s %s", self.address_string(), format % args)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            try:
                if url.path in ("/", "/episode"):
                    query = parse_qs(url.query).get("id")
                    target = int(query[0]) if query and query[0].strip().isdigit() else viewer.first
                    if query and not query[0].strip().isdigit():
                        raise PipelineError(f"episode id must be a number, got {query[0]!r}")
                    self._send(HTTPStatus.OK, "text/html", viewer.page(viewer.config.info(target).episode_id))
                elif match := re.fullmatch(r"/episode/(\d+)", url.path):
                    self._send(HTTPStatus.OK, "text/html", viewer.page(int(match[1])))
                elif match := re.fullmatch(r"/episode/(\d+)\.json", url.path):
                    document = viewer.episode_json(viewer.config.episode(int(match[1])))
                    self._send(HTTPStatus.OK, "application/json", json.dumps(document))
                elif match := re.fullmatch(r"/frame/(\d+)/(\d+)\.png", url.path):
                    frames = viewer.frames(viewer.config.info(int(match[1])).episode_id)
                    step = int(match[2])
                    if step >= len(frames.pngs):
                        raise PipelineError(f"no frame {step}: {frames.missing or 'past the drawn frames'}")
                    self._send(HTTPStatus.OK, "image/png", frames.pngs[step])
                else:
                    self._send(HTTPStatus.NOT_FOUND, "text/plain", f"no page {url.path}")
            except PipelineError as exc:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", str(exc))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the browser went away
            except Exception as exc:
                log.exception("view: %s failed", self.path)
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain", f"{type(exc).__name__}: {exc}")

        def _send(self, status: HTTPStatus, kind: str, body: str | bytes) -> None:
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", kind + ("; charset=utf-8" if kind.startswith("text") else ""))
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store" if kind == "text/html" else "max-age=3600")
            self.end_headers()
            self.wfile.write(data)

    return Handler


# --- the page ----------------------------------------------------------------------------------
def _polyline(values: np.ndarray, low: float, high: float, colour: str, name: str) -> str:
    n = len(values)
    span = (high - low) or 1.0
    xs = np.linspace(0, PLOT_W, n) if n > 1 else np.array([0.0])
    ys = PLOT_H - (values - low) / span * PLOT_H
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    return f'<polyline class="{name}" fill="none" stroke="{colour}" stroke-width="1.2" points="{points}"/>'


def _plot(title: str, series: list[tuple[str, np.ndarray, str]], steps: int) -> str:
    """An SVG of one or more series over the steps, with a marker line the slider moves."""
    finite = np.concatenate([s for _, s, _ in series]) if series else np.zeros(1)
    low, high = float(finite.min(initial=0.0)), float(finite.max(initial=0.0))
    lines = "".join(_polyline(values, low, high, colour, name) for name, values, colour in series)
    legend = " ".join(f'<span style="color:{c}">■ {html.escape(n)}</span>' for n, _, c in series)
    return (
        f'<div class="plot"><div class="plot-title">{html.escape(title)} '
        f"<small>[{low:.3g}, {high:.3g}]</small> {legend}</div>"
        f'<svg width="{PLOT_W}" height="{PLOT_H}" viewBox="0 0 {PLOT_W} {PLOT_H}" data-steps="{steps}">'
        f'<rect width="{PLOT_W}" height="{PLOT_H}" fill="#fafafa" stroke="#ccc"/>{lines}'
        f'<line class="marker" x1="0" x2="0" y1="0" y2="{PLOT_H}" stroke="#d33"/></svg></div>'
    )


_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")


def _fmt_action(action: np.ndarray) -> str:
    if np.ndim(action) == 0:
        return str(int(action))
    return "[" + ", ".join(f"{a:.3f}" for a in np.asarray(action)) + "]"


def render_page(config: DatasetConfig, episode: EpisodeData, max_frames: int) -> str:
    """The episode's page: metadata, navigation, frame and slider, plots, and the step table."""
    ids = config.episode_ids
    here = ids.index(episode.episode_id)
    nearby = ids[max(0, here - NEARBY) : here + NEARBY + 1]
    links = " ".join(
        f"<b>{i}</b>" if i == episode.episode_id else f'<a href="/episode/{i}">{i}</a>' for i in nearby
    )
    prev_link = f'<a id="prev" href="/episode/{ids[here - 1]}">← previous</a>' if here > 0 else ""
    next_link = f'<a id="next" href="/episode/{ids[here + 1]}">next →</a>' if here + 1 < len(ids) else ""
    rewards = np.asarray(episode.rewards, dtype=np.float64)
    actions = np.asarray(episode.actions)
    action_series = (
        [("action", actions.astype(np.float64), _COLOURS[2])]
        if actions.ndim == 1
        else [(f"a[{k}]", actions[:, k].astype(np.float64), _COLOURS[k % 8]) for k in range(actions.shape[1])]
    )
    plots = (
        _plot("reward", [("reward", rewards, _COLOURS[0])], episode.length)
        + _plot("return so far", [("return", np.cumsum(rewards), _COLOURS[1])], episode.length)
        + _plot("actions", action_series, episode.length)
    )
    rows = "".join(
        f'<tr id="s{t}"><td>{t}</td><td>{html.escape(_fmt_action(actions[t]))}</td>'
        f"<td>{rewards[t]:.4g}</td></tr>"
        for t in range(episode.length)
    )
    mission = ""
    if TEXT_OBSERVATIONS in episode.columns and episode.length:
        text = html.escape(episode.columns[TEXT_OBSERVATIONS][0])
        mission = f'<div class="mission">mission: <b id="mission">{text}</b></div>'
    success = "-" if episode.success is None else ("yes" if episode.success else "no")
    drawn = min(episode.length, max_frames)
    fps = get_suite(config.spec.suite).fps_for(config.spec)
    title = f"{config.name} episode {episode.episode_id}"
    return _PAGE.format(
        title=html.escape(title),
        source=html.escape(config.dataset.source),
        config=html.escape(config.name),
        env_id=html.escape(config.manifest.env_id),
        episode=episode.episode_id,
        split=episode.split,
        seed=episode.seed,
        length=episode.length,
        ret=f"{episode.episode_return:.4g}",
        success=success,
        count=len(ids),
        mission=mission,
        prev=prev_link,
        next=next_link,
        links=links,
        last=max(drawn - 1, 0),
        drawn=drawn,
        interval=round(1000 / fps),
        plots=plots,
        rows=rows,
        css=_CSS,
    )


_CSS = """body{font-family:sans-serif;margin:16px;color:#222}h1{font-size:20px;margin:0 0 6px}
.meta span{margin-right:14px}.nav{margin:8px 0}.nav a{margin:0 3px}.main{display:flex;gap:20px}
.frame img{image-rendering:pixelated;min-width:256px;border:1px solid #ccc}.frame{min-width:300px}
.plot{margin-bottom:8px}.plot-title{font-size:13px}.steps{max-height:300px;overflow-y:auto;font-size:12px}
table{border-collapse:collapse}td,th{padding:1px 8px;text-align:right}tr.now{background:#ffd}
.missing{color:#a33;max-width:360px}"""

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title><style>{css}</style>
<script>
function noFrames(img) {{  // the frame request says why there are none (no GL for MuJoCo, ...)
  fetch(img.src).then(r => r.text()).then(text => {{
    const note = document.createElement('div');
    note.className = 'missing'; note.id = 'frame-missing'; note.textContent = 'no frames: ' + text;
    img.replaceWith(note);
  }});
}}
</script></head>
<body>
<h1 id="title">{title}</h1>
<div class="meta"><span>dataset {source}</span><span>env {env_id}</span>
<span>split <b id="split">{split}</b></span><span>seed <b id="seed">{seed}</b></span>
<span>length <b id="length">{length}</b></span><span>return <b id="return">{ret}</b></span>
<span>success {success}</span></div>{mission}
<div class="nav">{prev} {next} | episodes: {links} ({count} in {config})
<form action="/episode" style="display:inline">
<input name="id" size="6" placeholder="id"><button>go</button></form></div>
<div class="main">
<div class="frame">
<img id="frame" src="/frame/{episode}/0.png" alt="frame of step 0"
 onerror="noFrames(this)">
<div><input id="step" type="range" min="0" max="{last}" value="0" style="width:256px">
<button id="play">play</button></div>
<div>step <b id="t">0</b> of {length} (frames drawn: {drawn})</div>
</div>
<div><div id="plots">{plots}</div>
<div class="steps"><table id="table"><thead><tr><th>step</th><th>action</th><th>reward</th></tr></thead>
<tbody>{rows}</tbody></table></div></div>
</div>
<script>
const slider = document.getElementById('step'), img = document.getElementById('frame');
let timer = null;
function show(t) {{
  slider.value = t; document.getElementById('t').textContent = t;
  const frame = document.getElementById('frame');
  if (frame) frame.src = '/frame/{episode}/' + t + '.png';
  document.querySelectorAll('tr.now').forEach(r => r.classList.remove('now'));
  const row = document.getElementById('s' + t);
  if (row) {{ row.classList.add('now'); row.scrollIntoView({{block: 'nearest'}}); }}
  document.querySelectorAll('svg').forEach(svg => {{
    const n = Math.max(+svg.dataset.steps - 1, 1), x = t / n * {plot_w};
    svg.querySelector('.marker').setAttribute('x1', x); svg.querySelector('.marker').setAttribute('x2', x);
  }});
}}
slider.addEventListener('input', () => show(+slider.value));
document.getElementById('play').addEventListener('click', e => {{
  if (timer) {{ clearInterval(timer); timer = null; e.target.textContent = 'play'; return; }}
  e.target.textContent = 'pause';
  timer = setInterval(() => show(+slider.value >= {last} ? 0 : +slider.value + 1), {interval});
}});
document.addEventListener('keydown', e => {{
  if (e.key === 'ArrowRight') show(Math.min(+slider.value + 1, {last}));
  if (e.key === 'ArrowLeft') show(Math.max(+slider.value - 1, 0));
}});
show(0);
</script>
</body></html>
""".replace("{plot_w}", str(PLOT_W))
