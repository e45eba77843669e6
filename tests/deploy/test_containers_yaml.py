"""`deployments/prefect-containers.yaml`: the file docs/scale-out.md shows, valid for `prefect deploy`.

No server and no cluster: the file is read the way `prefect deploy` reads it (its own
model of prefect.yaml, then its loader), each entrypoint is loaded the way a worker
loads it (from the repository root, the image's `/opt/etl`), and the parameters are
checked against the flow's signature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
FILE = ROOT / "deployments" / "prefect-containers.yaml"
DOCS = ROOT / "docs" / "scale-out.md"


def shown_in_docs() -> str:
    """The YAML block docs/scale-out.md shows as `deployments/prefect-containers.yaml`."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("```yaml\n", text.index("`deployments/prefect-containers.yaml` (beside"))
    start += len("```yaml\n")
    return text[start : text.index("```\n", start)]


def test_the_docs_show_the_file_as_it_is() -> None:
    assert shown_in_docs() == FILE.read_text(encoding="utf-8")


def test_prefect_deploy_reads_the_file_and_the_flows_take_its_parameters() -> None:
    from prefect.cli.deploy._config import _load_deploy_configs_and_actions
    from prefect.cli.deploy._models import PrefectYamlModel  # what `prefect deploy` checks
    from prefect.flows import load_flow_from_entrypoint
    from rich.console import Console

    PrefectYamlModel.model_validate(yaml.safe_load(FILE.read_text(encoding="utf-8")))
    console = Console(record=True)
    configs, actions = _load_deploy_configs_and_actions(FILE, console=console)
    assert console.export_text() == ""  # nothing skipped, no warning
    assert [c["name"] for c in configs] == ["nightly-containers", "shard-containers"]
    [pull] = actions["pull"]
    assert pull["prefect.deployments.steps.set_working_directory"] == {"directory": "/opt/etl"}

    flows: dict[str, Any] = {}
    for config in configs:
        pool = config["work_pool"]
        assert pool["name"] == "llm-k8s" and pool["job_variables"]["image"], config["name"]
        assert "PREFECT_OPENAI_CHAT_CACHE" in pool["job_variables"]["env"]
        flows[config["name"]] = load_flow_from_entrypoint(str(ROOT / config["entrypoint"]))
    parent, shard = configs
    parameters = dict(parent["parameters"])
    run = dict(parameters["run"])
    assert run["shard_deployment"] == f"{flows['shard-containers'].name}/shard-containers"
    assert all(str(parameters[n]).startswith("s3://") for n in ("source", "output", "quarantine"))
    # the parameters (and the commented storage_options line) as the flow's signature takes them
    run["storage_options"] = "aws-credentials/etl-buckets"
    validated = flows["nightly-containers"].validate_parameters({**parameters, "run": run})
    assert validated["run"].shards == 8
    assert validated["run"].storage_options == run["storage_options"]
    assert validated["spec"].key_field == "ticket_id"
    assert "parameters" not in shard or not shard["parameters"]  # the parent passes them all
