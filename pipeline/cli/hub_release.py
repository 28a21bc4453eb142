"""CLI subcommands releasing to the Hub's model repos: publish-experts, publish-model."""

from __future__ import annotations

import argparse

from rich.console import Console

from pipeline.cli.options import add_config, config_from
from pipeline.configs.release_hub import PublishExpertsConfig, PublishModelConfig
from pipeline.runtime.tables import narrow_table


# --- publish-experts / publish-model -----------------------------------------------------------
def _add_publish_experts(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "publish-experts", PublishExpertsConfig, _cmd_publish_experts)


def _cmd_publish_experts(args: argparse.Namespace) -> int:
    from pipeline.release.publish_experts import publish_experts

    config = config_from(PublishExpertsConfig, args)
    summary = publish_experts(config)
    verb = "written" if config.to_folder else "uploaded"
    where = f"folder {config.to_folder}" if config.to_folder else "Hub"
    table = narrow_table(f"experts of {summary.experts_dir} → {where} ({summary.seconds:.1f} s)")
    table.add_column("config", no_wrap=True)
    table.add_column("status")
    for column in (f"files {verb}", "MB", "unchanged", "deleted"):
        table.add_column(column, justify="right")
    for release in summary.releases:
        r = release.result
        table.add_row(
            release.config,
            str(release.status),
            str(len(r.uploaded)),
            f"{r.uploaded_bytes / 1e6:.2f}",
            str(r.unchanged),
            str(len(r.deleted)),
        )
    out = Console()
    out.print(table)
    for release in summary.releases:
        out.print(f"{release.config} → {release.result.target}", highlight=False)
    if config.to_folder is None:
        out.print(f"use them with: pipeline rollout --policy expert --experts-dir hf://{config.repo_prefix}")
    return 0


def _add_publish_model(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "publish-model", PublishModelConfig, _cmd_publish_model)


def _cmd_publish_model(args: argparse.Namespace) -> int:
    from pipeline.release.publish_model import publish_model

    config = config_from(PublishModelConfig, args)
    summary = publish_model(config)
    r = summary.result
    out = Console(soft_wrap=True)
    verb = "uploaded" if summary.repo_id else "written"
    out.print(
        f"publish-model → {r.target}: {len(r.uploaded)} file(s) {verb} ({r.uploaded_bytes / 1e6:.2f} MB), "
        f"{r.unchanged} unchanged, {len(r.deleted)} deleted in {summary.seconds:.1f} s"
    )
    if summary.repo_id:
        out.print(f"score it with: pipeline evaluate --model {summary.repo_id} --tasks TASKS")
    return 0
