"""`pipeline evaluate`: the model acts in the real environments and is scored as JAT scored it.

Each task's env comes from `pipeline.envs.make_env`, so the model sees exactly the
observations it was trained on. The model acts autoregressively with a KV cache
(`IncrementalDecoder`), sampling its discrete actions as JAT's evaluation did (or greedily).
Returns are normalised against the registry's JAT references — (return - random) /
(expert - random), and by the human reference for Atari — and aggregated per domain by mean
and IQM with stratified-bootstrap 95 % intervals. A uniformly random policy can be run on the
same episode seeds alongside, as a measured baseline.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.configs.model import EvaluateConfig
from pipeline.envs import make_env
from pipeline.episodes import EpisodeRun, play
from pipeline.errors import PipelineError
from pipeline.hub_models import model_folder
from pipeline.model.checkpoints import MODEL_FILES
from pipeline.model.configuration import check_task_fits
from pipeline.model.inference import IncrementalDecoder
from pipeline.model.metrics import Aggregate, aggregate, human_normalised, normalised
from pipeline.model.modeling import JatModel
from pipeline.model.reporting import plot_scores, write_csv, write_json
from pipeline.model.tokenizer import MissionTokenizer
from pipeline.plan import episode_seed
from pipeline.registry import SUITES, TaskSpec, get_task, suite_tasks

log = logging.getLogger(__name__)


@dataclass
class EpisodeStats:
    """Per-episode outcomes of one policy on one task."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)  # empty when the task defines none
    truncated: int = 0
    normalised: list[float] | None = None
    human_normalised: list[float] | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "mean_return": float(np.mean(self.returns)),
            "std_return": float(np.std(self.returns)),
            "success_rate": float(np.mean(self.successes)) if self.successes else None,
            "normalised_mean": None if self.normalised is None else float(np.mean(self.normalised)),
            "human_normalised_mean": None
            if self.human_normalised is None
            else float(np.mean(self.human_normalised)),
            "mean_length": float(np.mean(self.lengths)),
            "truncated": self.truncated,
        }


@dataclass
class TaskResult:
    config: str
    suite: str
    model: EpisodeStats
    baseline: EpisodeStats | None
    seconds: float


@dataclass
class EvaluateResult:
    tasks: list[TaskResult]
    aggregates: list[Aggregate]
    out: str

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per task: the table printed and saved as CSV."""
        rows = []
        for t in self.tasks:
            row = {
                "config": t.config,
                "suite": t.suite,
                "episodes": len(t.model.returns),
                **t.model.summary(),
            }
            if t.baseline is not None:
                b = t.baseline.summary()
                row |= {
                    "random_mean_return": b["mean_return"],
                    "random_success_rate": b["success_rate"],
                    "random_normalised_mean": b["normalised_mean"],
                }
            rows.append(row)
        return rows


class _RandomActor:
    def __init__(self, env: Any) -> None:
        self.space = env.action_space

    def reset(self, seed: int) -> None:
        self.space.seed(seed)

    def act(self, observation: Any, reward: float | None) -> Any:
        return self.space.sample()


class _ModelActor:
    def __init__(self, decoder: IncrementalDecoder, seed: int) -> None:
        self.decoder = decoder
        self.seed = seed

    def reset(self, seed: int) -> None:
        self.decoder.reset()
        self.decoder.generator.manual_seed(seed ^ self.seed)

    def act(self, observation: Any, reward: float | None) -> Any:
        return self.decoder.act(observation, reward)


def run_episodes(
    env: Any, spec: TaskSpec, actor: Any, seeds: list[int], max_steps: int | None, on_episode: Any = None
) -> EpisodeStats:
    """Play one episode per seed; the actor gets each observation and the previous reward."""
    stats = EpisodeStats()
    for seed in seeds:
        # the loop rollout records with (pipeline.episodes); the model sees the previous reward
        run = EpisodeRun(env, spec, seed, max_steps=max_steps)
        actor.reset(seed)
        play(run, lambda r: actor.act(r.observation, r.reward))
        stats.truncated += int(run.cut or (run.truncated and not run.terminated))
        stats.returns.append(run.total)
        stats.lengths.append(run.length)
        if run.success is not None:
            stats.successes.append(run.success)
        if on_episode is not None:
            on_episode()
    stats.normalised = normalised(spec.scores, stats.returns)
    if spec.suite == "atari":
        stats.human_normalised = human_normalised(spec.scores, stats.returns)
    return stats


def resolve_eval_tasks(names: tuple[str, ...]) -> list[TaskSpec]:
    specs: list[TaskSpec] = []
    for name in names:
        for spec in suite_tasks(name) if name in SUITES else [get_task(name)]:
            if spec not in specs:
                specs.append(spec)
    return specs


def load_model(path: str | Path) -> tuple[JatModel, MissionTokenizer]:
    path = Path(path).expanduser()
    if not (path / "config.json").exists() or not (path / "model.safetensors").exists():
        raise PipelineError(
            f"{path} holds no trained model (config.json + model.safetensors): "
            "train one with `pipeline train-model --out DIR`"
        )
    model = JatModel.from_pretrained(path).eval()
    return model, MissionTokenizer.load(path, model.config.max_text_tokens)


def evaluate(config: EvaluateConfig) -> EvaluateResult:
    """Run every task's episodes with the model (and the random baseline); write results and a plot."""
    specs = resolve_eval_tasks(config.tasks)
    folder, repo_id = model_folder(config.model, list(MODEL_FILES))  # ORG/NAME: downloaded from the Hub
    model, tokenizer = load_model(folder)
    for spec in specs:
        check_task_fits(model.config, spec)
    default_out = Path("outputs", "eval", repo_id.replace("/", "--")) if repo_id else folder / "eval"
    out = Path(config.out).expanduser() if config.out else default_out
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    display = _Display(config.progress, specs, config.episodes * (2 if config.random_baseline else 1))
    results: list[TaskResult] = []
    try:
        for spec in specs:
            started = time.monotonic()
            env = make_env(spec)  # the registry's horizon: references were measured with it
            seeds = [episode_seed(config.seed, f"eval:{spec.config}", i) for i in range(config.episodes)]
            decoder = IncrementalDecoder(
                model, spec, tokenizer, deterministic=config.greedy, seed=config.seed
            )
            tick = display.ticker(spec.config)
            model_stats = run_episodes(
                env, spec, _ModelActor(decoder, config.seed), seeds, config.max_episode_steps, tick
            )
            baseline = None
            if config.random_baseline:
                baseline = run_episodes(env, spec, _RandomActor(env), seeds, config.max_episode_steps, tick)
            env.close()
            results.append(
                TaskResult(spec.config, spec.suite, model_stats, baseline, time.monotonic() - started)
            )
            log.info(
                "%s: mean return %.2f, normalised %s",
                spec.config,
                np.mean(model_stats.returns),
                model_stats.summary()["normalised_mean"],
            )
    finally:
        display.close()
    aggregates = _aggregates(results, config.bootstrap_reps, config.seed)
    result = EvaluateResult(results, aggregates, str(out))
    _write(out, result, config)
    return result


def _aggregates(results: list[TaskResult], reps: int, seed: int) -> list[Aggregate]:
    found = []
    for suite in SUITES:
        in_suite = [r for r in results if r.suite == suite]
        kinds = [("expert", "normalised")] + ([("human", "human_normalised")] if suite == "atari" else [])
        for kind, attr in kinds:
            scores = {
                r.config: getattr(r.model, attr) for r in in_suite if getattr(r.model, attr) is not None
            }
            agg = aggregate(suite, kind, scores, reps, seed) if scores else None
            if agg is not None:
                found.append(agg)
    return found


def _write(out: Path, result: EvaluateResult, config: EvaluateConfig) -> None:
    tasks = [
        {
            "config": t.config,
            "suite": t.suite,
            "seconds": t.seconds,
            **t.model.summary(),
            "episodes": dataclasses.asdict(t.model),
            "baseline": None
            if t.baseline is None
            else {**t.baseline.summary(), "episodes": dataclasses.asdict(t.baseline)},
        }
        for t in result.tasks
    ]
    domains = [dataclasses.asdict(a) for a in result.aggregates]
    write_json(
        out / "results.json", {"config": dataclasses.asdict(config), "tasks": tasks, "domains": domains}
    )
    write_csv(out / "results.csv", result.rows())
    plot_scores(out / "scores.png", tasks, domains)


class _Display:
    """A rich progress bar over all episodes (model and baseline)."""

    def __init__(self, enabled: bool, specs: list[TaskSpec], per_task: int) -> None:
        self.progress = None
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("evaluate {task.fields[current]:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        self.task = self.progress.add_task("evaluate", total=len(specs) * per_task, current="")
        self.progress.start()

    def ticker(self, name: str) -> Any:
        if self.progress is None:
            return None
        self.progress.update(self.task, current=name)
        return lambda: self.progress.advance(self.task)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
