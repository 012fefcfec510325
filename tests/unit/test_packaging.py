"""The deployable artefacts: the compose file, Dockerfiles and the lock files."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "agreements", "notifications", "casework")
COMPOSE = ROOT / "docker-compose.yml"


def env_example() -> dict[str, str]:
    """.env.example: the variables compose needs (the real .env is never committed)."""
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key] = value
    return found


def compose_check_env() -> dict[str, str]:
    """.env.example with every empty value filled: what validating the compose file needs."""
    return {key: value or f"check0{key.lower().replace('_', '0')}" for key, value in env_example().items()}


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="`make test` installs docker-compose")
def test_compose_file_is_valid() -> None:
    env = {key: value for key, value in os.environ.items() if key not in env_example()}
    run = ["docker-compose", "-f", str(COMPOSE), "config", "-q"]
    result = subprocess.run(
        run, cwd=ROOT, env={**env, **compose_check_env()}, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    # Without the secrets it refuses to run: nothing falls back to a default password.
    result = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert result.returncode != 0


def test_env_example_names_every_variable_compose_requires_and_env_is_not_committed() -> None:
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", COMPOSE.read_text()))
    assert required == set(env_example()), required ^ set(env_example())
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    assert (
        not (ROOT / ".env").exists()
        or subprocess.run(
            ["git", "ls-files", "--error-unmatch", ".env"], cwd=ROOT, capture_output=True, check=False
        ).returncode
        != 0
    ), ".env is committed"
    # Placeholders only: no password in the example.
    secrets = [key for key in env_example() if key.endswith(("PASSWORD", "TOKEN", "KEY", "SECRET"))]
    assert len(secrets) >= 12
    assert not any(env_example()[key] for key in secrets)


def test_compose_runs_every_component_with_health_checks() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"rabbitmq", "mongo", "mailpit", "agreements-proxy", "ledger-verify", *SERVICES}
    for name in ("rabbitmq", "mongo", "mailpit", "agreements-proxy"):
        assert "healthcheck" in services[name], name
    for name in SERVICES:
        assert services[name]["build"]["dockerfile"] == f"services/{name}/Dockerfile"
        assert "container_name" not in services[name]  # scaling needs generated names


@pytest.mark.parametrize("consumer", ["agreements", "notifications"])
def test_compose_consumers_scale_without_fixed_names_or_host_ports(consumer: str) -> None:
    # `docker compose up --scale <consumer>=3` fails on a fixed container name or host port.
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][consumer]
    assert "container_name" not in service
    assert "ports" not in service, f"{consumer} publishes a host port, so a second replica cannot start"
    assert service.get("expose"), f"{consumer} should expose its HTTP port to the other containers"


def test_compose_reaches_every_agreements_replica_through_the_proxy_on_8001() -> None:
    # STATUS_BASE_URL (http://localhost:8001) must still answer with agreements scaled out.
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    proxy = services["agreements-proxy"]
    assert proxy["ports"] == ["127.0.0.1:8001:8001"]
    [mount] = proxy["volumes"]
    source = ROOT / mount.split(":")[0]
    config = source.read_text()
    assert "proxy_pass $agreements;" in config
    assert "set $agreements http://agreements:8001;" in config
    assert "resolver 127.0.0.11" in config  # re-resolved, so added replicas get traffic
    published = [port.split(":")[1] for service in services.values() for port in service.get("ports", [])]
    assert len(published) == len(set(published)), published


def test_compose_casework_calls_agreements_through_the_proxy_with_its_own_token() -> None:
    services = compose_services()
    casework, agreements = services["casework"]["environment"], services["agreements"]["environment"]
    assert isinstance(casework, dict)
    assert isinstance(agreements, dict)
    assert casework["AGREEMENTS_URL"] == "http://agreements-proxy:8001"  # every agreements replica
    token = re.fullmatch(r"\$\{(AGREEMENTS_API_TOKEN):\?[^}]*\}", casework["AGREEMENTS_API_TOKEN"])
    assert token, casework["AGREEMENTS_API_TOKEN"]
    assert re.fullmatch(r"casework=\$\{AGREEMENTS_API_TOKEN:\?[^}]*\}", agreements["STAFF_API_TOKENS"])
    assert casework["SESSION_COOKIE_SECURE"] == "true"
    assert "CONSOLE_ADMIN_PASSWORD" not in casework  # the first admin: python -m casework create-admin
    assert services["casework"]["ports"] == ["127.0.0.1:8003:8003"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_its_own_dockerfile_and_entry_point(service: str) -> None:
    dockerfile = (ROOT / "services" / service / "Dockerfile").read_text()
    assert "--require-hashes" in dockerfile
    assert f'CMD ["wechat-{service}"]' in dockerfile
    assert (
        f'wechat-{service} = "{service}.__main__:main"' in (ROOT / "services" / service / "pyproject.toml").read_text()
    )


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_lock_files_pin_every_package_with_hashes_and_name_no_index(lock: str) -> None:
    text = (ROOT / lock).read_text()
    requirements = re.findall(r"^([A-Za-z0-9_.\-\[\]]+)(==[^ \\]+)? \\$", text, flags=re.MULTILINE)
    assert requirements, "no requirements found"
    assert all(pin for _, pin in requirements), [name for name, pin in requirements if not pin]
    assert "--index-url" not in text
    assert "--extra-index-url" not in text
    assert "--find-links" not in text
    assert not re.search(r"https?://", text)
    assert text.count("--hash=sha256:") >= len(requirements)


# -- nothing on other interfaces, nothing without credentials ----------------------------------


def compose_services() -> dict[str, dict[str, object]]:
    services: dict[str, dict[str, object]] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def test_compose_publishes_ports_on_the_loopback_interface_only() -> None:
    published = [
        (name, str(port))
        for name, service in compose_services().items()
        for port in service.get("ports", [])  # type: ignore[attr-defined]
    ]
    assert {name for name, _ in published} >= {"rabbitmq", "mongo", "mailpit", "intake", "agreements-proxy", "casework"}
    for name, port in published:
        assert re.fullmatch(r"127\.0\.0\.1:\d+:\d+", port), f"{name} publishes {port} beyond this machine"


def test_compose_runs_rabbitmq_4_and_both_servers_with_credentials() -> None:
    services = compose_services()
    image = str(services["rabbitmq"]["image"])
    assert re.fullmatch(r"rabbitmq:4\.3[-.\w]*-management", image), image
    rabbitmq_env = services["rabbitmq"]["environment"]
    assert "RABBITMQ_DEFAULT_PASS" not in rabbitmq_env  # type: ignore[operator]
    mongo_env = services["mongo"]["environment"]
    assert mongo_env["MONGO_INITDB_ROOT_USERNAME"].startswith("${MONGO_INITDB_ROOT_USERNAME:?")  # type: ignore[index]
    assert mongo_env["MONGO_INITDB_ROOT_PASSWORD"].startswith("${MONGO_INITDB_ROOT_PASSWORD:?")  # type: ignore[index]
    mounts = [str(volume) for volume in services["mongo"]["volumes"]]  # type: ignore[attr-defined]
    assert any(mount.endswith(":/docker-entrypoint-initdb.d/10-wechat-users.js:ro") for mount in mounts)
    mounts = [str(volume) for volume in services["rabbitmq"]["volumes"]]  # type: ignore[attr-defined]
    assert any(mount.endswith(":/etc/rabbitmq/conf.d/20-wechat-agency.conf:ro") for mount in mounts)
    conf = (ROOT / "deploy/compose/rabbitmq/20-wechat-agency.conf").read_text()
    assert re.search(r"^load_definitions = /etc/rabbitmq/definitions.json$", conf, flags=re.MULTILINE)


@pytest.mark.parametrize("service", [*SERVICES, "ledger-verify"])
def test_each_compose_service_connects_as_its_own_user(service: str) -> None:
    env = compose_services()[service]["environment"]
    assert isinstance(env, dict)
    mongodb = re.fullmatch(r"mongodb://([\w-]+):\$\{(\w+):\?[^}]*\}@mongo:27017/\?authSource=admin", env["MONGODB_URL"])
    assert mongodb, env["MONGODB_URL"]
    assert mongodb[1] == f"wechat-{service}"
    assert mongodb[2] == f"MONGO_{service.upper().replace('-', '_')}_PASSWORD"
    if service == "ledger-verify":
        assert "AMQP_URL" not in env
        return
    amqp = re.fullmatch(r"amqp://([\w-]+):\$\{(\w+):\?[^}]*\}@rabbitmq:5672/wechat_agency", env["AMQP_URL"])
    assert amqp, env["AMQP_URL"]
    assert amqp[1] == f"wechat-{service}"
    assert amqp[2] == f"RABBITMQ_{service.upper()}_PASSWORD"


# -- images: multi-stage, non-root, pinned, only their service's dependencies -------------------

IMAGE_UID = 10001


def dockerfile(service: str) -> str:
    return (ROOT / "services" / service / "Dockerfile").read_text()


def stages(text: str) -> list[tuple[str, list[str]]]:
    """The Dockerfile's stages: each FROM's image (ARG defaults resolved) and its instructions."""
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))
    found: list[tuple[str, list[str]]] = []
    for instruction in re.sub(r"\\\n", " ", text).splitlines():
        if instruction.startswith("FROM "):
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], instruction.split()[1])
            found.append((image, []))
        elif found and instruction.strip() and not instruction.startswith("#"):
            found[-1][1].append(instruction)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_is_built_in_two_stages_from_a_base_pinned_by_digest(service: str) -> None:
    built = stages(dockerfile(service))
    assert len(built) >= 2, "a builder stage and a runtime stage"
    for image, _ in built:
        assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", image), image
    _, runtime = built[-1]
    assert not any("pip install" in line or "pip wheel" in line for line in runtime), "the runtime stage installs"
    copies = [line for line in runtime if line.startswith("COPY")]
    assert copies == ["COPY --from=builder /opt/venv /opt/venv"], copies
    _, builder = built[0]
    assert f"COPY services/{service}/requirements.lock /tmp/requirements.lock" in builder
    assert any("--require-hashes --no-deps -r /tmp/requirements.lock" in line for line in builder)


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_runs_as_a_fixed_unprivileged_uid(service: str) -> None:
    _, runtime = stages(dockerfile(service))[-1]
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users == [f"{IMAGE_UID}:{IMAGE_UID}"], users
    assert any(f"--uid {IMAGE_UID} --gid {IMAGE_UID}" in line for line in runtime)


def test_the_build_context_leaves_out_secrets_and_local_state() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".env", ".venv", ".git", "var"} <= set(ignored)


@pytest.mark.parametrize("service", [*SERVICES, "ledger-verify"])
def test_compose_runs_the_services_read_only_without_capabilities(service: str) -> None:
    config = compose_services()[service]
    assert config["read_only"] is True
    assert config["cap_drop"] == ["ALL"]
    assert config["security_opt"] == ["no-new-privileges:true"]
    assert config["tmpfs"] == ["/tmp"]  # noqa: S108 (a private tmpfs, the one writable place)
    assert "user" not in config  # the image's USER 10001:10001
