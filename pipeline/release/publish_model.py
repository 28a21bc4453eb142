"""`pipeline publish-model`: the thin JAT model to a Hub model repo (or a folder), with a model card.

    README.md                       the card (`pipeline.release.hub_cards.render_model_card`): architecture,
                                    training data and weights, losses, evaluation, how to load it
    config.json, model.safetensors  the model (`JatModel.from_pretrained` reads them)
    tokenizer.json, tokenizer_config.json
    training.json, losses.csv, test_losses.csv, losses.png    the training run
    eval/<run>/results.json, results.csv, scores.png          each `pipeline evaluate` run

MODEL_DIR/checkpoint/ (optimizer and RNG state for --resume) is never uploaded. As for experts,
a re-run compares checksums and commits only what changed; `pipeline evaluate --model ORG/NAME`
downloads the published files back (`pipeline.release.hub_models.model_folder`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from pipeline.configs.release_hub import PublishModelConfig
from pipeline.errors import PipelineError
from pipeline.model.checkpoints import MODEL_FILES, RUN_FILES
from pipeline.release.hub_cards import render_model_card
from pipeline.release.hub_models import ModelRepoTarget, PushResult, push, repo_file
from pipeline.release.publish_targets import FolderTarget, PublishFile, Target
from pipeline.runtime.storage import Location, open_location

log = logging.getLogger(__name__)

EVAL_DIR = "eval"
EVAL_FILES = ("results.json", "results.csv", "scores.png")


@dataclass(frozen=True)
class PublishModelSummary:
    model_dir: str
    repo_id: str | None
    result: PushResult
    seconds: float


def _json(location: Location, relative: str) -> dict[str, Any] | None:
    if not location.exists(relative):
        return None
    try:
        return location.read_json(relative)
    except ValueError as exc:
        raise PipelineError(f"{location.path(relative)} is not valid JSON ({exc}): re-create it") from None


def _files(location: Location, name: str) -> list[PublishFile]:
    missing = [f for f in MODEL_FILES if not location.exists(f)]
    if missing:
        raise PipelineError(
            f"{location.uri} holds no complete trained model (missing {', '.join(missing)}): "
            "train one with `pipeline train-model --out DIR`, or give the folder it wrote"
        )
    paths = [*MODEL_FILES, *(f for f in RUN_FILES if location.exists(f))]
    runs = _eval_runs(location)
    paths += [f"{run}/{f}" for run in runs for f in EVAL_FILES if location.exists(f"{run}/{f}")]
    files = [repo_file(location, p) for p in paths]
    config = _json(location, "config.json") or {}
    evaluations = {run: _json(location, f"{run}/results.json") or {} for run in runs}
    card = render_model_card(name, config, _json(location, "training.json"), evaluations, paths)
    return [*files, PublishFile.generated("README.md", card.encode())]


def _eval_runs(location: Location) -> list[str]:
    """The folders `pipeline evaluate` wrote results into: eval/<run>/ (and eval/ itself, where
    evaluations before runs had folders of their own wrote)."""
    found = [
        location.relative(info.path).rsplit("/", 1)[0]
        for info in location.list(EVAL_DIR, recursive=True)
        if info.base_name == "results.json"
    ]
    return sorted(found, key=lambda run: (run != EVAL_DIR, run))


def publish_model(config: PublishModelConfig) -> PublishModelSummary:
    """Publish MODEL_DIR to `config.repo_id` (or `config.to_folder`); returns what was uploaded."""
    started = time.monotonic()
    location = open_location(config.model_dir)
    if not location.exists(""):
        raise PipelineError(f"{location.uri} does not exist: give the folder train-model wrote")
    target: Target
    if config.repo_id:
        target = ModelRepoTarget(config.repo_id, config.private, config.xet)
    else:
        assert config.to_folder is not None
        target = FolderTarget(config.to_folder)
        if target.location.uri.rstrip("/") == location.uri.rstrip("/"):
            raise PipelineError(f"--to-folder {config.to_folder} is the model folder itself: choose another")
    files = _files(location, config.repo_id or target.name)
    quiet = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        target.check()
        target.prepare()
        result = push(target, files, (f"{EVAL_DIR}/",), "Publish the JAT model", location)
    finally:
        target.close()
        if not quiet:
            enable_progress_bars()
    return PublishModelSummary(location.uri, config.repo_id, result, time.monotonic() - started)
