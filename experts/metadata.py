"""An expert's `metadata.json` as one typed, frozen record: written by training, read everywhere else.

Training writes it last (a folder with metadata.json holds a finished expert); evaluation rewrites
its verdict; rollout, the store, the report and the backends read it. Each reads fields, not dict
keys, so a renamed key is a type error here rather than a silent `None` in one of five readers, and
the status is an `ExpertStatus`, not a string compared by hand. The JSON keeps its keys, so stores
written before this module are read as they are; a key this version does not know is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from pipeline.errors import PipelineError
from pipeline.tasks.sections import check_keys

METADATA = "metadata.json"


class ExpertStatus(StrEnum):
    """An expert's gate verdict in metadata.json (`status`), and a task's outcome in the stage's table.

    A `StrEnum`, so metadata.json holds the plain words and comparing with them still works."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNEVALUATED = "unevaluated"
    FAILED = "failed"


@dataclass(frozen=True)
class ExpertMetadata:
    """What a stored expert is: how it was trained, on what, and the gate's verdict on it."""

    config: str
    suite: str
    backend: str
    """The backend that trained it (or that is the expert, when it trains nothing)."""
    status: ExpertStatus = ExpertStatus.UNEVALUATED
    trained: bool = False
    """False for experts that train nothing (the BabyAI bot, Meta-World's scripted policies)."""
    algo: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    deterministic: bool = True
    """Acts with its most likely action (evaluation and rollout alike)."""
    env_spec: dict[str, Any] = field(default_factory=dict)
    """The env it was trained and evaluated on (`experts.training.env_spec_record`)."""
    steps_target: int = 0
    steps_trained: int = 0
    resumed_from_step: int | None = None
    wall_time_s: float = 0.0
    seed: int = 0
    num_cpus: int = 1
    resources: dict[str, Any] = field(default_factory=dict)
    """What Ray gave the training task (`experts.device.RayPlacement`)."""
    learning_curve: str | None = None
    history_every: int = 0
    history_every_s: float = 0.0
    history_snapshots: int = 0
    created: str = ""
    evaluation: dict[str, Any] | None = None
    """`experts.evaluation.EvalResult.to_dict()` of the candidate that acts; None: never evaluated."""
    gate: dict[str, Any] | None = None
    """The gate's threshold and reason."""
    candidates: dict[str, Any] | None = None
    """Meta-World: each candidate's evaluation and gate, by backend (`experts.candidates`)."""
    chosen: str | None = None
    """Meta-World: the candidate that acts in rollouts (the better on the same seeds)."""
    choice_reason: str | None = None
    source: dict[str, Any] | None = None
    """Imported experts (`pipeline import-experts`): the released repo, the revision it resolved to,
    the framework and its version, the files read with their sha256, the card's license."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", ExpertStatus(self.status))

    @property
    def acting_backend(self) -> str:
        """The backend whose policy acts: the chosen candidate, else the one trained.

        A Meta-World expert may keep its scripted policy over the network trained for it; the
        metadata then still describes the training (`backend`, steps, snapshots) and names the choice.
        """
        return self.chosen or self.backend

    @property
    def normalised(self) -> float | None:
        return (self.evaluation or {}).get("normalised")

    def own_evaluation(self) -> dict[str, Any] | None:
        """The trained network's own evaluation, also when a scripted candidate acts instead."""
        if self.chosen and self.chosen != self.backend:
            return ((self.candidates or {}).get(self.backend) or {}).get("evaluation")
        return self.evaluation

    def choice_provenance(self) -> dict[str, Any]:
        """What a dataset's manifest adds when the store chose among candidates: `{"choice": {"chosen",
        "normalised" per candidate, "reason"}}`; {} for experts without candidates."""
        if not self.chosen:
            return {}
        scores = {
            name: (candidate.get("evaluation") or {}).get("normalised")
            for name, candidate in (self.candidates or {}).items()
        }
        return {"choice": {"chosen": self.chosen, "normalised": scores, "reason": self.choice_reason}}

    def without_choice(self) -> ExpertMetadata:
        """The trained network's metadata (learning-history snapshots are the network's)."""
        return replace(self, chosen=None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; the choice keys only for experts chosen among candidates."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["status"] = str(self.status)
        for key in ("candidates", "chosen", "choice_reason", "source"):
            if out[key] is None:
                del out[key]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> ExpertMetadata:
        check_keys(
            where,
            data,
            {f.name for f in fields(cls)},
            fix="it was written by another jat-pipeline version; use that one, or retrain with "
            "`pipeline train-experts --overwrite`",
        )
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise PipelineError(
                f"{where} is malformed ({exc}): retrain with `pipeline train-experts --overwrite`"
            ) from None
