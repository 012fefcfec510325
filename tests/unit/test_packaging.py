"""The deployable artefacts: the compose file, Dockerfiles and the lock files."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "agreements", "notifications")


# The compose file has no defaults for these (the services run with production rules there);
# any values do for validating it.
COMPOSE_REQUIRED = {
    "RABBITMQ_PASSWORD": "compose0check",
    "MAIL_FROM": "WeChat Agency <no-reply@agency.example>",
    "STAFF_EMAILS": "staff@agency.example",
    "STAFF_API_TOKEN": "compose-check-token",
    "CAPTCHA_HMAC_KEY": "compose-check-captcha-key",
    "EMAIL_VERIFICATION_SECRET": "compose-check-secret",
    "LEDGER_SIGNING_KEY": "compose-check-ledger-key",
    "LEDGER_ANCHOR_EMAILS": "ledger-archive@agency.example",
}


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="`make test` installs docker-compose")
def test_compose_file_is_valid() -> None:
    env = {**os.environ, **COMPOSE_REQUIRED}
    result = subprocess.run(
        ["docker-compose", "config", "-q"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_compose_runs_every_component_with_health_checks() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"rabbitmq", "mongo", "mailpit", "agreements-proxy", *SERVICES}
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
    assert proxy["ports"] == ["8001:8001"]
    [mount] = proxy["volumes"]
    source = ROOT / mount.split(":")[0]
    config = source.read_text()
    assert "proxy_pass $agreements;" in config
    assert "set $agreements http://agreements:8001;" in config
    assert "resolver 127.0.0.11" in config  # re-resolved, so added replicas get traffic
    published = [port.split(":")[0] for service in services.values() for port in service.get("ports", [])]
    assert len(published) == len(set(published)), published


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
