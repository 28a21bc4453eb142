"""The `import` kind of `chaos_stages.py`: import-experts from the tests' Hub server, killed mid-download.

The server (tests/hub_server.py, in this process) serves a released layout built as
tests/experts/expert_helpers.py does from a tiny sample-factory training, its files sent at
`BYTES_PER_S` so that a kill lands inside a file; it logs every GET of a file, so a re-run that
fetches again a file the cache held whole at the kill is counted.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from chaos import KindReport
from chaos_stages import CONFIG, TrainBench, _env, _kill, _last_line, _start, _wait, evaluate, sha256

REPO = "edbeeching/mujoco_hopper_1111"
BYTES_PER_S = 32_000


class ImportBench:
    def __init__(self, scratch: Path, rng: random.Random) -> None:
        from dataclasses import replace

        from expert_helpers import released_layout, tiny_plan
        from hub_server import HubServer
        from huggingface_hub import HfApi

        from experts.training import train_expert

        self.scratch, self.rng, self.said = scratch, rng, ""
        self.fetched: list[tuple[str, int]] = []
        scored = {"save_best_after": 0, "save_best_every_sec": 1, "save_milestones_sec": 1}
        plan = replace(tiny_plan(CONFIG, "sample-factory", 1500, **scored), evaluate=False)
        result = train_expert(plan, str(scratch / "trained"))
        assert result.status != "failed", result.error
        self.release = released_layout(
            scratch / "trained" / CONFIG / "checkpoints", scratch / "mirror" / REPO, "mujoco_hopper"
        )
        self.server = HubServer(scratch / "hub", orgs=("jat-org", "edbeeching")).start()
        from huggingface_hub import constants

        constants.HF_HUB_DISABLE_XET = True  # the tests' server speaks LFS only
        api = HfApi(endpoint=self.server.url, token=self.server.token)
        api.create_repo(REPO, repo_type="model", exist_ok=True)
        api.upload_folder(repo_id=REPO, folder_path=str(self.release), repo_type="model")
        self.files = self.server.files(REPO, kind="model")
        self.server.throttle(BYTES_PER_S)
        self.argv = ["import-experts", "--tasks", CONFIG, "--eval-episodes", "2"]
        started = time.monotonic()
        code, first_call = self._import(scratch / "reference", None)
        if code != 0:
            raise RuntimeError(
                f"the reference import failed: {_last_line(scratch / 'reference' / 'run.log')}"
            )
        self.duration_s = time.monotonic() - first_call
        print(
            f"import: reference first Hub call after {first_call - started:.1f} s, "
            f"then {self.duration_s:.1f} s",
            flush=True,
        )

    def _import(self, folder: Path, delay: float | None, log: str = "run.log") -> tuple[int | None, float]:
        """One import into `folder/experts` (cache `folder/hf`), killed `delay` s after its first Hub call."""
        folder.mkdir(parents=True, exist_ok=True)
        env = _env(
            HF_ENDPOINT=self.server.url,
            HF_TOKEN=self.server.token,
            HF_HOME=str(folder / "hf"),
            HF_HUB_OFFLINE="0",
            HF_HUB_DISABLE_XET="1",
        )
        calls = sum(self.server.counts.values())
        process = _start([*self.argv, "--out", str(folder / "experts")], folder / log, env)
        while process.poll() is None and sum(self.server.counts.values()) == calls:
            time.sleep(0.01)
        first_call = time.monotonic()
        if delay is None:
            return _wait(process), first_call
        time.sleep(delay)
        return (-9 if _kill(process) else process.returncode), first_call

    def _complete(self, folder: Path) -> set[str]:
        """Paths whose blob the cache holds whole (renamed from `.incomplete`)."""
        blobs = folder / "hf" / "hub" / f"models--{REPO.replace('/', '--')}" / "blobs"
        names = {p.name for p in blobs.iterdir()} if blobs.is_dir() else set()
        return {
            path for path, e in self.files.items() if (e["sha256"] if e["lfs"] else e["git_oid"]) in names
        }

    def run(self, index: int, report: KindReport) -> bool:

        folder = self.scratch / str(index)
        code, _ = self._import(folder, self.rng.uniform(0, self.duration_s))
        struck = code == -9
        report.exit_codes[str(code)] = report.exit_codes.get(str(code), 0) + 1
        metadata = folder / "experts" / CONFIG / "metadata.json"
        complete = self._complete(folder)
        partial = sorted(p.name for p in folder.rglob("*.incomplete"))
        finished = metadata.exists()
        if struck and not finished:
            before = len(self.server.downloads)
            report.resumed += 1
            code, _ = self._import(folder, None, "rerun.log")
            if code is None:
                report.hung += 1
                report.notes.append(f"run {index}: re-run hung")
                return struck
            again = [path for _, path, _ in self.server.downloads[before:] if path in complete]
            self.fetched = [
                (path.rsplit("/", 1)[-1], first) for _, path, first in self.server.downloads[before:]
            ]
            TrainBench._bad(
                report,
                "duplicated",
                f"run {index}: complete at the kill, fetched again: {again}",
                count=len(again),
            )
            if code != 0:
                TrainBench._bad(
                    report,
                    "invalid",
                    f"run {index}: re-run exited {code}: {_last_line(folder / 'rerun.log')}",
                )
                return struck
        meta = json.loads(metadata.read_text())
        files = meta["source"]["files"]
        wanted = {"cfg.json", "README.md", meta["source"]["checkpoint"]}
        TrainBench._bad(
            report,
            "missing",
            f"run {index}: files {sorted(wanted - set(files))}" if set(files) != wanted else "",
        )
        wrong = [name for name, digest in files.items() if digest != sha256(self.release / name)]
        model = folder / "experts" / CONFIG / "model" / "model.pth"
        if sha256(model) != sha256(self.release / meta["source"]["checkpoint"]):
            wrong.append("model/model.pth")
        TrainBench._bad(
            report, "differing", f"run {index}: sha256 of {wrong} (partial {partial})" if wrong else ""
        )
        snapshot = next((folder / "hf" / "hub").glob("models--*/snapshots/*"))
        damaged = [
            p.name
            for p in snapshot.rglob("*")
            if p.is_file() and sha256(p) != sha256(self.release / p.relative_to(snapshot))
        ]
        TrainBench._bad(
            report,
            "invalid",
            f"run {index}: cached files differ from the release: {damaged}" if damaged else "",
        )
        code = evaluate(folder / "experts")
        TrainBench._bad(report, "invalid", f"run {index}: evaluate-experts exited {code}" if code else "")
        fetched = f", re-run GETs (file, first byte) {self.fetched}" if struck and not finished else ""
        self.said = f"complete at the kill {sorted(complete)}, partial {partial}{fetched}" if struck else ""
        return struck
