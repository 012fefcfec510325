"""The OpenAPI schema describes every endpoint, and a property-based run against it finds no 5xx or contradiction."""

import asyncio
import sys
from pathlib import Path

from intake.main import create_app
from intake.settings import IntakeSettings
from tests.support.apps import client, http_server, serving
from tests.support.settings import settings_with

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Checks about what the server answers; "positive data acceptance" is left out on
# purpose: schema-valid data can still be refused for reasons a JSON schema cannot
# express (an unknown country code, a stale agreement hash, the rate limit).
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)


async def test_every_endpoint_body_and_error_is_in_the_schema(intake_settings: IntakeSettings) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        schema = (await http.get("/openapi.json")).json()
    paths = schema["paths"]
    assert set(paths) == {
        "/",
        "/contact",
        "/v1/agreements/current",
        "/v1/captcha/challenge",
        "/v1/applications",
        "/v1/enquiries",
        "/verify/{token}",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    post = paths["/v1/applications"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "application/x-www-form-urlencoded"}
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ApplicationForm"
    }
    assert set(post["responses"]) >= {"202", "403", "409", "413", "415", "422", "429", "503"}
    assert "application/problem+json" in post["responses"]["422"]["content"]
    components = schema["components"]["schemas"]
    assert {"ApplicationForm", "EnquiryForm", "Problem", "FieldError", "OfficialAccount", "Company"} <= set(components)


async def test_schemathesis_finds_no_server_error_and_no_contradiction(
    intake_settings: IntakeSettings, tmp_path: Path
) -> None:
    # A generous rate limit, so the run reaches the validation and publishing paths.
    app = create_app(settings_with(intake_settings, rate_limit="100000/minute"))
    report = tmp_path / "schemathesis.json"
    async with serving(), http_server(app) as url:
        run = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS), "run", f"{url}/openapi.json",
            "--checks", CHECKS, "--max-examples", "40", "--seed", "20261125",
            "--request-timeout", "10", "--workers", "2",
            "--phases", "examples,coverage,fuzzing",
            "--report", "ndjson", "--report-ndjson-path", str(report),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        async with asyncio.timeout(240):
            output, _ = await run.communicate()
    text = output.decode(errors="replace")
    assert run.returncode == 0, text[-6000:]
    assert "No issues found" in text or "passed" in text, text[-3000:]
    assert report.exists()
