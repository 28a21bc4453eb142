"""Configs of `pipeline publish-experts` and `pipeline publish-model`: releasing experts and the model.

One Hub model repo per expert (`ORG/<prefix>-<config>`, as sample-factory's and RL Zoo's
`push_to_hub` do) and one for the JAT model, each with a model card. The names are checked here,
before any request, with the dataset publisher's rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.configs import option
from pipeline.configs.publish import check_repo_id
from pipeline.errors import PipelineError

HF_SCHEME = "hf://"
"""`--experts-dir hf://ORG/PREFIX`: the experts published as ORG/PREFIX-<config> model repos."""


def expert_repo_id(prefix: str, config: str) -> str:
    """The model repo of one expert: `ORG/<prefix>-<config>` (e.g. my-org/jat-expert-mujoco-hopper)."""
    return f"{prefix.rstrip('-')}-{config}"


@dataclass(frozen=True)
class PublishExpertsConfig:
    """Push trained experts to the Hub: one model repo per expert, with a model card.

    Each expert of EXPERTS_DIR goes to ORG/<prefix>-<config> with its model files, metadata.json,
    learning curve (CSV and PNG) and a card (backend, hyperparameters, training, evaluation, how to
    use it); never its training checkpoints. Re-running uploads only what changed. Experts the
    quality gate rejected or never evaluated are refused unless --allow-weak, as by `rollout`;
    failed ones always. `pipeline rollout --policy
    expert --experts-dir hf://ORG/<prefix>` uses the published experts. Hub endpoint: HF_ENDPOINT;
    token: HF_TOKEN or `hf auth login`.
    """

    experts_dir: str = option(positional=True, metavar="EXPERTS_DIR")
    """EXPERTS_DIR written by train-experts (a local folder or `pyarrow.fs` URI)."""
    repo_prefix: str = option(metavar="ORG/PREFIX")
    """Repo name prefix: the expert of config C goes to ORG/PREFIX-C (e.g. my-org/jat-expert)."""
    suite: str | None = None
    """Suite whose experts to publish: all its tasks unless --tasks is given; default: every expert."""
    tasks: tuple[str, ...] = ()
    """Comma-separated task names, short within the suite or full configs; default: every expert."""
    to_folder: str | None = None
    """Write each repo's files to DIR/<PREFIX>-<config>/ instead of the Hub (to inspect them first)."""
    allow_weak: bool = False
    """Publish experts the quality gate rejected or never evaluated (`train-experts --no-eval`), as
    `rollout --allow-weak` records them; their card says so."""
    with_history: bool = False
    """Also upload the learning-history snapshots (history/), for `rollout --learning-history`."""
    private: bool = False
    """Create the repos private (an existing repo keeps its visibility)."""
    xet: bool = option(
        True,
        flag="--no-xet",
        negated="Upload through plain LFS, not Xet (servers without Xet, such as the tests' local Hub)",
    )
    """Let huggingface_hub use Xet storage when installed."""
    clips: bool = option(
        True, negated="Draw no replays (a replay.gif already in EXPERTS_DIR is still published)"
    )
    """Show a replay on each card: EXPERTS_DIR/<config>/replay.gif, else one episode recorded with the
    expert and drawn (kept as replay.gif in a local EXPERTS_DIR; MuJoCo and Meta-World need
    MUJOCO_GL=osmesa with libosmesa6, else get none)."""

    def __post_init__(self) -> None:
        if not self.experts_dir:
            raise PipelineError("give the experts folder to publish (EXPERTS_DIR)")
        if self.experts_dir.startswith(HF_SCHEME):
            raise PipelineError(
                f"EXPERTS_DIR {self.experts_dir} is already on the Hub: give the local folder "
                "train-experts wrote"
            )
        try:
            check_repo_id(self.repo_prefix)
        except PipelineError as exc:
            raise PipelineError(f"--repo-prefix: {exc}") from None
        if len(set(self.tasks)) != len(self.tasks):
            raise PipelineError(f"--tasks lists a task twice: {', '.join(self.tasks)}")
        if self.to_folder is not None and self.private:
            raise PipelineError("--private applies to the Hub: drop it with --to-folder")


@dataclass(frozen=True)
class PublishModelConfig:
    """Push a trained JAT model to a Hub model repo (or a folder) with a model card.

    Uploads MODEL_DIR's model files (config.json, weights, tokenizer), its training record and loss
    curves, and its evaluation (eval/results.json, .csv, scores.png) when present, with a card
    describing the architecture, the training data and the scores; never the training checkpoint.
    Re-running uploads only what changed. `pipeline evaluate --model ORG/NAME` loads it back.
    """

    model_dir: str = option(positional=True, metavar="MODEL_DIR")
    """Model folder written by train-model (and evaluate)."""
    repo_id: str | None = None
    """Hub model repo ORG/NAME; without it the files go to --to-folder."""
    to_folder: str | None = None
    """Write the repo's files to this folder instead of the Hub."""
    private: bool = False
    """Create the repo private (an existing repo keeps its visibility)."""
    xet: bool = option(
        True,
        flag="--no-xet",
        negated="Upload through plain LFS, not Xet (servers without Xet, such as the tests' local Hub)",
    )
    """Let huggingface_hub use Xet storage when installed."""

    def __post_init__(self) -> None:
        if not self.model_dir:
            raise PipelineError("give the model folder to publish (MODEL_DIR)")
        if (self.repo_id is None) == (self.to_folder is None):
            raise PipelineError(
                "give one of --repo-id ORG/NAME (publish to the Hub) or --to-folder DIR (write a folder)"
            )
        if self.repo_id is not None:
            check_repo_id(self.repo_id)
        elif self.private:
            raise PipelineError("--private applies to the Hub: give --repo-id ORG/NAME as well")
