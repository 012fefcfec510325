"""Write the queue policies the services would put into the deployment files: compose's RabbitMQ definitions
and the Kubernetes Policy resources (tests/unit/test_deployment.py keeps both equal to the code).

Run after adding a consumer queue to agency_shared/topology.py: `.venv/bin/python scripts/queue_policies.py`.
"""

import json
import re
from pathlib import Path
from typing import Any

import yaml

from agency_chassis.policies import Limits, Policy, policies
from agency_chassis.settings import SharedSettings
from agency_shared.topology import DEFAULT_MAX_LENGTH

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "deploy/compose/rabbitmq/definitions.template.json"
K8S = ROOT / "deploy/k8s/base/rabbitmq-policies.yaml"
VHOST = "wechat_agency"
CLUSTER = "wechat-rabbitmq"


def _policies() -> list[Policy]:
    retention = SharedSettings.model_fields["dead_letter_retention_days"].default
    return policies(Limits(DEFAULT_MAX_LENGTH, retention))


def write_compose(rules: list[Policy]) -> None:
    definitions = json.loads(COMPOSE.read_text())
    definitions["policies"] = [{"vhost": VHOST, "name": rule.name, **rule.body()} for rule in rules]
    COMPOSE.write_text(json.dumps(definitions, indent=2, ensure_ascii=False) + "\n")


def _resource(rule: Policy) -> dict[str, Any]:
    return {
        "apiVersion": "rabbitmq.com/v1beta1",
        "kind": "Policy",
        "metadata": {"name": re.sub(r"[^a-z0-9-]", "-", rule.name.lower())},
        "spec": {
            "name": rule.name,
            "vhost": VHOST,
            "pattern": rule.pattern,
            "applyTo": rule.apply_to,
            "priority": rule.priority,
            "definition": rule.definition,
            "rabbitmqClusterReference": {"name": CLUSTER},
        },
    }


def write_kubernetes(rules: list[Policy]) -> None:
    text = K8S.read_text()
    header = text[: text.index("apiVersion:")]  # the file's opening comment
    documents = [yaml.safe_dump(_resource(rule), sort_keys=False, width=10_000) for rule in rules]
    K8S.write_text(header + "---\n".join(documents))


if __name__ == "__main__":
    found = _policies()
    write_compose(found)
    write_kubernetes(found)
    print(f"{len(found)} policies written to {COMPOSE.relative_to(ROOT)} and {K8S.relative_to(ROOT)}")
