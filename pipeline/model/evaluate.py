"""`pipeline evaluate`: the model acts in the real environments and is scored as JAT scored it.

Each task's env comes from `pipeline.tasks.envs.make_env`, so the model sees exactly the
observations it was trained on. The model acts autoregressively with a KV cache
(`IncrementalDecoder`), sampling its discrete actions as JAT's evaluation did (or greedily).
Returns are normalised against the registry's JAT references — (return - random) /
(expert - random), and by the human reference for Atari — and aggregated per domain by mean
and IQM with stratified-bootstrap 95 % intervals. A uniformly random policy can be run on the
same episode seeds alongside, as a measured baseline.

Each episode is a work unit (`EpisodeUnit`) played by an `EvaluateWorker`: in this process
(`--workers 0`) or on Ray actors through the project's executor (`--workers N`, one model copy per
actor). An episode's env seed comes from `pipeline.format.plan.episode_seed` and its action-sampling
generator is re-seeded from that seed at the episode's start, so an episode's outcome depends on
nothing another episode did: the rows are the same whichever worker plays which episode, in
whatever order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from pipeline.configs.model import EvaluateConfig
from pipeline.errors import PipelineError
from pipeline.format.plan import episode_seed
from pipeline.model.checkpoints import MODEL_FILES
from pipeline.model.configuration import JatConfig, check_task_fits
from pipeline.model.devices import resolve_device
from pipeline.model.inference import IncrementalDecoder
from pipeline.model.metrics import Aggregate, aggregate, human_normalised, normalised
from pipeline.model.modeling import JatModel
from pipeline.model.reporting import plot_scores, write_csv, write_json
from pipeline.model.tokenizer import MissionTokenizer
from pipeline.release.hub_models import model_folder
from pipeline.runtime.executor import require_shared_storage, run_streaming
from pipeline.runtime.progress import Bars
from pipeline.suites import get_suite, suite_names
from pipeline.tasks.envs import make_env
from pipeline.tasks.episodes import EpisodeRun, play
from pipeline.tasks.registry import TaskSpec, get_task, suite_tasks

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


@dataclass(frozen=True)
class EpisodeUnit:
    """One episode to play: the executor's work unit."""

    config: str
    policy: Literal["model", "random"]
    index: int
    seed: int

    def describe(self) -> str:
        return f"{self.config} {self.policy} episode {self.index}"


@dataclass(frozen=True)
class EpisodeOutcome:
    """What one episode gave; `seconds` is the only field that varies between identical runs."""

    unit: EpisodeUnit
    total: float
    length: int
    success: bool | None
    truncated: bool
    seconds: float


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to build its model copy and play units (picklable, sent to each actor)."""

    model: str
    device: str
    precision: str
    greedy: bool
    seed: int
    max_episode_steps: int | None
    threads: int | None


class EvaluateWorker:
    """Plays episode units with one model copy and one decoder per task it meets.

    It keeps the env of the task it last played only: units come task by task, and a suite's
    dozens of envs (Atari's emulators) need not all stay open."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.device = resolve_device(settings.device, settings.precision)
        folder, _ = model_folder(settings.model, list(MODEL_FILES))  # a Hub model: fetched on this node
        self.model, self.tokenizer = load_model(folder, self.device)
        self.env: tuple[str, Any] | None = None
        self.decoders: dict[str, IncrementalDecoder] = {}

    def play(self, unit: EpisodeUnit) -> Iterator[EpisodeOutcome]:
        started = time.monotonic()
        spec = get_task(unit.config)
        if self.env is None or self.env[0] != unit.config:
            self.close()
            self.env = (unit.config, make_env(spec))  # the registry's horizon: references used it
        env = self.env[1]
        if unit.policy == "random":
            actor: Any = _RandomActor(env)
        else:
            if unit.config not in self.decoders:
                s = self.settings
                self.decoders[unit.config] = IncrementalDecoder(
                    self.model, spec, self.tokenizer, deterministic=s.greedy, precision=s.precision
                )
            actor = _ModelActor(self.decoders[unit.config], self.settings.seed)
        # the loop rollout records with (pipeline.tasks.episodes); the model sees the previous reward
        run = EpisodeRun(env, spec, unit.seed, max_steps=self.settings.max_episode_steps)
        actor.reset(unit.seed)
        play(run, lambda r: actor.act(r.observation, r.reward))
        yield EpisodeOutcome(
            unit,
            run.total,
            run.length,
            run.success,
            bool(run.cut or (run.truncated and not run.terminated)),
            time.monotonic() - started,
        )

    def close(self) -> None:
        if self.env is not None:
            self.env[1].close()
            self.env = None


def episode_stats(spec: TaskSpec, outcomes: list[EpisodeOutcome]) -> EpisodeStats:
    """One policy's outcomes on one task, in episode order, with their normalised scores."""
    stats = EpisodeStats()
    for o in sorted(outcomes, key=lambda o: o.unit.index):
        stats.truncated += int(o.truncated)
        stats.returns.append(o.total)
        stats.lengths.append(o.length)
        if o.success is not None:
            stats.successes.append(o.success)
    stats.normalised = normalised(spec.scores, stats.returns)
    if get_suite(spec.suite).human_scores:
        stats.human_normalised = human_normalised(spec.scores, stats.returns)
    return stats


def resolve_eval_tasks(names: tuple[str, ...]) -> list[TaskSpec]:
    specs: list[TaskSpec] = []
    for name in names:
        for spec in suite_tasks(name) if name in suite_names() else [get_task(name)]:
            if spec not in specs:
                specs.append(spec)
    return specs


def _check_model_folder(path: Path) -> None:
    if not (path / "config.json").exists() or not (path / "model.safetensors").exists():
        raise PipelineError(
            f"{path} holds no trained model (config.json + model.safetensors): "
            "train one with `pipeline train-model --out DIR`"
        )


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[JatModel, MissionTokenizer]:
    """A saved model on `device` (it loads on any device, whichever wrote it), and its tokenizer."""
    path = Path(path).expanduser()
    _check_model_folder(path)
    model = JatModel.from_pretrained(path).to(device).eval()
    return model, MissionTokenizer.load(path, model.config.max_text_tokens)


def run_name(specs: list[TaskSpec]) -> str:
    """The folder of one evaluation under MODEL/eval: the configs it scored, in order
    (`babyai-go-to+mujoco-hopper`), or `<n>-tasks-<hash of their names>` for more than 3."""
    names = [s.config for s in specs]
    if len(names) <= 3:
        return "+".join(names)
    return f"{len(names)}-tasks-{hashlib.sha256('+'.join(names).encode()).hexdigest()[:8]}"


def evaluate(config: EvaluateConfig) -> EvaluateResult:
    """Run every task's episodes with the model (and the random baseline); write results and a plot."""
    resolve_device(config.device, config.precision)  # before any work: one line if impossible
    specs = resolve_eval_tasks(config.tasks)
    folder, repo_id = model_folder(config.model, list(MODEL_FILES))  # ORG/NAME: downloaded from the Hub
    _check_model_folder(folder)
    model_config = JatConfig.from_pretrained(folder)
    for spec in specs:
        check_task_fits(model_config, spec)
    local_model = None if repo_id else str(folder.resolve())
    require_shared_storage({"--model": local_model}, config.address, config.workers, config.shared_fs)
    default_out = Path("outputs", "eval", repo_id.replace("/", "--")) if repo_id else folder / "eval"
    out = Path(config.out).expanduser() if config.out else default_out / run_name(specs)
    if (out / "results.json").exists() and not config.overwrite:
        raise PipelineError(
            f"{out} already holds the results of an evaluation of {', '.join(s.config for s in specs)}: pass "
            "--overwrite to replace them, or --out DIR to keep both"
        )
    out.mkdir(parents=True, exist_ok=True)
    policies: tuple[Literal["model", "random"], ...] = (
        ("model", "random") if config.random_baseline else ("model",)
    )
    units = [
        EpisodeUnit(spec.config, policy, i, episode_seed(config.seed, f"eval:{spec.config}", i))
        for spec in specs
        for policy in policies
        for i in range(config.episodes)
    ]
    settings = WorkerSettings(
        model=repo_id or str(folder.resolve()),
        device=config.device,
        precision=config.precision,
        greedy=config.greedy,
        seed=config.seed,
        max_episode_steps=config.max_episode_steps,
        threads=config.threads,
    )
    display = Bars(
        config.progress,
        lambda rp: (
            rp.TextColumn("evaluate {task.fields[current]:<28}"),
            rp.BarColumn(),
            rp.MofNCompleteColumn(),
            rp.TimeElapsedColumn(),
        ),
    )
    display.add("evaluate", len(specs) * config.episodes * len(policies), current="")
    outcomes: dict[tuple[str, str, int], EpisodeOutcome] = {}
    expected = {spec.config: config.episodes * len(policies) for spec in specs}
    results: dict[str, TaskResult] = {}

    def take(outcome: EpisodeOutcome) -> list[EpisodeUnit]:
        u = outcome.unit
        if (u.config, u.policy, u.index) in outcomes:  # a unit re-run after its worker died
            return []
        outcomes[(u.config, u.policy, u.index)] = outcome
        display.update("evaluate", current=u.config, advance=1)
        expected[u.config] -= 1
        if expected[u.config] == 0:
            results[u.config] = _task_result(get_task(u.config), outcomes)
        return []

    try:
        if config.workers == 0:
            worker = EvaluateWorker(settings)
            try:
                for unit in units:
                    for outcome in worker.play(unit):
                        take(outcome)
            finally:
                worker.close()
        else:
            run_streaming(
                partial(EvaluateWorker, settings), "play", units, take, config.workers, config.address
            )
    finally:
        display.close()
    task_results = [results[spec.config] for spec in specs]
    aggregates = _aggregates(task_results, config.bootstrap_reps, config.seed)
    result = EvaluateResult(task_results, aggregates, str(out))
    _write(out, result, config)
    return result


def _task_result(spec: TaskSpec, outcomes: dict[tuple[str, str, int], EpisodeOutcome]) -> TaskResult:
    """A finished task's stats; its seconds are the sum of its episodes' (workers overlap in time)."""
    mine = [o for (config, _, _), o in outcomes.items() if config == spec.config]
    model_stats = episode_stats(spec, [o for o in mine if o.unit.policy == "model"])
    baseline_outcomes = [o for o in mine if o.unit.policy == "random"]
    baseline = episode_stats(spec, baseline_outcomes) if baseline_outcomes else None
    log.info(
        "%s: mean return %.2f, normalised %s",
        spec.config,
        np.mean(model_stats.returns),
        model_stats.summary()["normalised_mean"],
    )
    seconds = sum(o.seconds for o in mine)
    return TaskResult(spec.config, spec.suite, model_stats, baseline, seconds)


def _aggregates(results: list[TaskResult], reps: int, seed: int) -> list[Aggregate]:
    found = []
    for suite in suite_names():
        in_suite = [r for r in results if r.suite == suite]
        human = [("human", "human_normalised")] if get_suite(suite).human_scores else []
        kinds = [("expert", "normalised"), *human]
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
