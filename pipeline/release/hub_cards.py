"""Model cards of the Hub releases: one per expert (`expert_card.md.j2`), one for the JAT model
(`model_card.md.j2`), rendered with the dataset card's Jinja2 environment and filters.

The YAML header follows the Hub's model-card metadata as RL Zoo and sample-factory write it:
`library_name`, `tags` (reinforcement-learning, jat-pipeline, the env id) and a `model-index` whose
`mean_reward` metric is the evaluation's "mean +/- std", so the Hub shows the score on the page
and in its leaderboards. A card holds no timestamp of its own, so re-rendering an unchanged expert
or model gives the same bytes and a re-run of the publish uploads nothing.
"""

from __future__ import annotations

from typing import Any

import yaml

from experts.metadata import ExpertMetadata
from pipeline.release.card import LICENSE, card_environment
from pipeline.runtime.storage import is_uri
from pipeline.tasks.registry import get_task

LIBRARY = "jat-pipeline"

FILE_MEANING = {
    "README.md": "this card",
    "metadata.json": "backend, versions, hyperparameters, env spec, training and evaluation record",
    "learning_curve.csv": "steps, wall_time_s, episodes, mean_return, mean_length during training",
    "learning_curve.png": "the learning curve against JAT's expert and random returns",
    "replay.gif": "a replay of the expert acting",
    "config.json": "the model's `JatConfig` (GPT-Neo backbone plus JAT's encoders and decoders)",
    "model.safetensors": "the weights",
    "tokenizer.json": "the BabyAI mission tokenizer",
    "tokenizer_config.json": "the tokenizer's settings",
    "training.json": "the training run's settings and result",
    "losses.csv": "training loss per step and task",
    "test_losses.csv": "test-split loss per checkpoint and task",
    "losses.png": "the loss curves",
}
EVAL_MEANING = {
    "results.json": "`pipeline evaluate`: every episode's return, per-task and per-domain scores",
    "results.csv": "`pipeline evaluate`: one row per task",
    "scores.png": "`pipeline evaluate`: normalised scores per task and domain",
}


def _meaning(path: str) -> str:
    if path in FILE_MEANING:
        return FILE_MEANING[path]
    if path.startswith("model/"):
        return "the policy the backend loads"
    if path.startswith("history/"):
        return "a learning-history snapshot (`rollout --learning-history`)"
    if path.startswith("eval/"):
        return EVAL_MEANING.get(path.rsplit("/", 1)[-1], "")
    return ""


def _model_index(name: str, env_id: str, mean: float, std: float) -> list[dict[str, Any]]:
    """RL Zoo's `model-index` entry: one reinforcement-learning result with its mean_reward."""
    return [
        {
            "name": name,
            "results": [
                {
                    "task": {"type": "reinforcement-learning", "name": "reinforcement-learning"},
                    "dataset": {"name": env_id, "type": env_id},
                    "metrics": [
                        {
                            "type": "mean_reward",
                            "value": f"{mean:.2f} +/- {std:.2f}",
                            "name": "mean_reward",
                            "verified": False,
                        }
                    ],
                }
            ],
        }
    ]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def render_expert_card(
    m: ExpertMetadata,
    repo_id: str,
    prefix: str,
    files: list[str],
    curve_plot: str | None,
    replay: str | None,
) -> str:
    """README.md of an expert's repo (`pipeline.release.publish_experts`)."""
    env_id = str(m.env_spec.get("env_id") or get_task(m.config).env_id)
    jat_env_id = str(m.env_spec.get("jat_env_id") or env_id)
    evaluation = m.evaluation or None
    header: dict[str, Any] = {
        "library_name": LIBRARY,
        "license": LICENSE,
        "tags": [
            "reinforcement-learning",
            "deep-reinforcement-learning",
            LIBRARY,
            "jat",
            m.suite,
            m.backend,
            env_id,
        ],
    }
    if evaluation:
        header["model-index"] = _model_index(
            m.algo or m.backend, env_id, evaluation["mean_return"], evaluation["std_return"]
        )
    hyperparameters = yaml.safe_dump(m.hyperparameters, sort_keys=True) if m.hyperparameters else ""
    versions = ", ".join(f"{k} {v}" for k, v in sorted(m.versions.items())) or "unrecorded versions"
    return (
        card_environment()
        .get_template("expert_card.md.j2")
        .render(
            header_yaml=yaml.safe_dump(header, sort_keys=False, allow_unicode=True),
            m=m,
            e=evaluation,
            env_id=env_id,
            jat_env_id=jat_env_id,
            gate_reason=(m.gate or {}).get("reason"),
            gate_threshold=(m.gate or {}).get("threshold"),
            wall_time=_duration(m.wall_time_s),
            versions=versions,
            hyperparameters=hyperparameters,
            curve_plot=curve_plot,
            replay=replay,
            repo_id=repo_id,
            prefix=prefix,
            files=[(p, _meaning(p)) for p in [*sorted(files), "README.md"]],
        )
    )


def render_model_card(
    repo_id: str,
    config: dict[str, Any],
    training: dict[str, Any] | None,
    evaluations: dict[str, dict[str, Any]],
    files: list[str],
) -> str:
    """README.md of the JAT model's repo (`pipeline.release.publish_model`).

    `config` is the model's config.json, `training` its training.json (settings and result), and
    `evaluations` the results.json of each `pipeline evaluate` run, by folder (eval/<run>).
    """
    settings = (training or {}).get("config") or {}
    result = (training or {}).get("result") or {}
    runs = [
        {
            "tasks": e.get("tasks") or [],
            "domains": e.get("domains") or [],
            "settings": e.get("config") or {},
            "plot": f"{folder}/scores.png" if f"{folder}/scores.png" in files else None,
        }
        for folder, e in evaluations.items()
        if e.get("tasks")
    ]
    tasks = list({t["config"]: t for run in reversed(runs) for t in run["tasks"]}.values())  # one per config
    configs = list(settings.get("configs") or [])
    weights = list(settings.get("weights") or []) or [1.0] * len(configs)
    header: dict[str, Any] = {
        "library_name": LIBRARY,
        "license": LICENSE,
        "pipeline_tag": "reinforcement-learning",
        "tags": ["reinforcement-learning", "jat", LIBRARY, "gpt_neo", "multi-task", "decision-transformer"],
    }
    data = settings.get("data")
    if (
        isinstance(data, str)
        and not is_uri(data)
        and data.count("/") == 1
        and not data.startswith((".", "/"))
    ):
        header["datasets"] = [data]  # a Hub dataset repo id
    if tasks:
        header["model-index"] = [
            {
                "name": repo_id.split("/")[-1],
                "results": [
                    _model_index("", get_task(t["config"]).env_id, t["mean_return"], t["std_return"])[0][
                        "results"
                    ][0]
                    for t in tasks
                ],
            }
        ]
    architecture = {
        key: config.get(key)
        for key in (
            "size_name",
            "hidden_size",
            "num_layers",
            "num_heads",
            "max_position_embeddings",
            "context_steps",
            "max_continuous_size",
            "max_discrete_obs_size",
            "max_discrete_actions",
            "discrete_embed_dim",
            "text_vocab_size",
            "max_text_tokens",
            "image_size",
            "image_channels",
            "observation_loss_coef",
            "use_rewards",
        )
        if key in config
    }
    return (
        card_environment()
        .get_template("model_card.md.j2")
        .render(
            header_yaml=yaml.safe_dump(header, sort_keys=False, allow_unicode=True),
            repo_id=repo_id,
            architecture=architecture,
            parameters=result.get("parameters"),
            settings=settings,
            result=result,
            mixture=list(zip(configs, weights, strict=False)),
            data=data,
            runs=runs,
            example_task=",".join(t["config"] for t in tasks) or ",".join(configs) or "babyai-go-to",
            has_losses="losses.png" in files,
            files=[(p, _meaning(p)) for p in [*sorted(files), "README.md"]],
        )
    )
