"""`experts.metadata`: an expert's metadata.json as a typed record; the status an enum of plain words."""

from __future__ import annotations

import json

import pytest

from experts.metadata import METADATA, ExpertMetadata, ExpertStatus
from pipeline.errors import PipelineError

# A metadata.json as train-experts wrote it before this module existed: no resources, no
# history_every_s, no candidates; the status a plain word.
OLD_JSON = """{
 "config": "mujoco-hopper",
 "suite": "mujoco",
 "backend": "sample-factory",
 "status": "accepted",
 "trained": true,
 "algo": "APPO",
 "versions": {"sample-factory": "2.1.1"},
 "hyperparameters": {"rollout": 64},
 "deterministic": true,
 "env_spec": {"env_id": "Hopper-v5"},
 "steps_target": 10000000,
 "steps_trained": 10002432,
 "resumed_from_step": null,
 "wall_time_s": 5123.5,
 "seed": 0,
 "num_cpus": 8,
 "learning_curve": "learning_curve.csv",
 "history_every": 500000,
 "history_snapshots": 20,
 "created": "2025-01-02T03:04:05+00:00",
 "evaluation": {"episodes": 20, "mean_return": 3100.0, "normalised": 0.95},
 "gate": {"threshold": 0.5, "reason": "normalised score 0.950 >= 0.50"}
}"""


def test_the_status_is_stored_as_its_plain_word():
    assert [str(s) for s in ExpertStatus] == ["accepted", "rejected", "unevaluated", "failed"]
    assert ExpertStatus("rejected") is ExpertStatus.REJECTED
    assert ExpertStatus.ACCEPTED == "accepted" and ExpertStatus.ACCEPTED != "rejected"
    assert json.dumps({"status": ExpertStatus.FAILED}) == '{"status": "failed"}'
    assert METADATA == "metadata.json"


@pytest.mark.parametrize("status", list(ExpertStatus))
def test_every_status_round_trips_through_json(status):
    metadata = ExpertMetadata("babyai-go-to", "babyai", "babyai-bot", status=status)
    data = json.loads(json.dumps(metadata.to_dict()))
    assert data["status"] == status.value
    back = ExpertMetadata.from_dict(data, "x")
    assert back == metadata and back.status is status


def test_a_status_given_as_a_word_becomes_the_enum():
    metadata = ExpertMetadata("babyai-go-to", "babyai", "babyai-bot", status="rejected")
    assert metadata.status is ExpertStatus.REJECTED
    assert ExpertMetadata("babyai-go-to", "babyai", "babyai-bot").status is ExpertStatus.UNEVALUATED


def test_metadata_written_before_this_module_is_read_as_it_is():
    metadata = ExpertMetadata.from_dict(json.loads(OLD_JSON), "old/metadata.json")
    assert metadata.status is ExpertStatus.ACCEPTED
    assert (metadata.config, metadata.backend, metadata.trained) == ("mujoco-hopper", "sample-factory", True)
    assert metadata.steps_trained == 10002432 and metadata.normalised == 0.95
    # keys the old file lacks take their declared defaults
    assert metadata.resources == {} and metadata.history_every_s == 0.0 and metadata.candidates is None
    assert metadata.acting_backend == "sample-factory" and metadata.choice_provenance() == {}
    # written back, it keeps the old keys and adds only the new defaults (no choice keys)
    written = metadata.to_dict()
    assert set(written) - set(json.loads(OLD_JSON)) == {"resources", "history_every_s"}
    assert {k: written[k] for k in json.loads(OLD_JSON)} == json.loads(OLD_JSON)


def test_a_key_this_version_does_not_know_is_refused_by_name():
    data = {**json.loads(OLD_JSON), "score": 1.0, "policy_url": "x"}
    with pytest.raises(PipelineError) as info:
        ExpertMetadata.from_dict(data, "EXPERTS/mujoco-hopper/metadata.json")
    assert str(info.value) == (
        "EXPERTS/mujoco-hopper/metadata.json: unknown key(s) ['policy_url', 'score'] (did you mean source?); "
        "it was written by another jat-pipeline version; use that one, or retrain with "
        "`pipeline train-experts --overwrite`"
    )


@pytest.mark.parametrize(
    ("key", "value", "cause"),
    [
        ("status", "great", "'great' is not a valid ExpertStatus"),
        ("backend", None, "missing 1 required positional argument: 'backend'"),  # None: key removed
    ],
)
def test_malformed_metadata_is_one_line_naming_the_file(key, value, cause):
    data = json.loads(OLD_JSON)
    if value is None:
        del data[key]
    else:
        data[key] = value
    with pytest.raises(PipelineError) as info:
        ExpertMetadata.from_dict(data, "m.json")
    message = str(info.value)
    assert message.startswith("m.json is malformed (") and cause in message
    assert message.endswith("retrain with `pipeline train-experts --overwrite`") and "\n" not in message


def _chosen() -> ExpertMetadata:
    scripted = {"evaluation": {"normalised": 0.9}, "status": "accepted"}
    trained = {"evaluation": {"normalised": 0.2}, "status": "rejected"}
    return ExpertMetadata(
        "metaworld-reach",
        "metaworld",
        "sample-factory",
        status=ExpertStatus.ACCEPTED,
        trained=True,
        evaluation={"normalised": 0.9},
        candidates={"metaworld-scripted": scripted, "sample-factory": trained},
        chosen="metaworld-scripted",
        choice_reason="scripted scores higher on the same seeds",
    )


def test_a_chosen_candidate_acts_and_the_network_keeps_its_own_evaluation():
    metadata = _chosen()
    assert metadata.acting_backend == "metaworld-scripted"
    assert metadata.normalised == 0.9
    assert metadata.own_evaluation() == {"normalised": 0.2}
    assert metadata.choice_provenance() == {
        "choice": {
            "chosen": "metaworld-scripted",
            "normalised": {"metaworld-scripted": 0.9, "sample-factory": 0.2},
            "reason": "scripted scores higher on the same seeds",
        }
    }
    network = metadata.without_choice()
    assert network.acting_backend == "sample-factory" and network.choice_provenance() == {}
    assert metadata.chosen == "metaworld-scripted"  # frozen: the original is unchanged
    back = ExpertMetadata.from_dict(json.loads(json.dumps(metadata.to_dict())), "x")
    assert back == metadata


def test_the_choice_keys_are_written_only_for_experts_chosen_among_candidates():
    plain = ExpertMetadata("mujoco-hopper", "mujoco", "sb3", evaluation={"normalised": 0.1}).to_dict()
    assert not {"candidates", "chosen", "choice_reason"} & set(plain)
    assert {"candidates", "chosen", "choice_reason"} <= set(_chosen().to_dict())
    unevaluated = ExpertMetadata("mujoco-hopper", "mujoco", "sb3")
    assert unevaluated.normalised is None and unevaluated.own_evaluation() is None


def test_metadata_is_frozen():
    metadata = _chosen()
    with pytest.raises(AttributeError):
        metadata.status = ExpertStatus.REJECTED
