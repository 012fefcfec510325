"""The services' ASGI apps in tests: run in-process, lifespan included (integration), or only built (unit)."""

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI
from pydantic import AmqpDsn

import agreements.main
import casework.main
import intake.main
import notifications.main
from agreements.settings import AgreementsSettings
from casework.settings import CaseworkSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings
from tests.support.servers import uvicorn_serving

# A broker the built apps name but never reach: building an app connects to nothing (the lifespan does).
UNREACHED_BROKER = AmqpDsn("amqp://localhost:5672/never-connected")


def built_apps() -> dict[str, FastAPI]:
    """Each service's app, built with local-development settings and never started: no server is needed.

    Building registers what the running service registers (routes, FastStream's and our
    metrics), so unit tests can look at it. Without the lifespan only the routes that need
    no broker or database answer (``/healthz``, ``/metrics``, the OpenAPI and AsyncAPI documents).
    """
    shared = {"environment": "local", "amqp_url": UNREACHED_BROKER, "log_level": "WARNING"}
    return {
        "intake": intake.main.create_app(IntakeSettings.model_validate(shared)),
        "agreements": agreements.main.create_app(AgreementsSettings.model_validate(shared)),
        "notifications": notifications.main.create_app(NotificationsSettings.model_validate(shared)),
        "casework": casework.main.create_app(CaseworkSettings.model_validate(shared)),
    }


@asynccontextmanager
async def serving(*apps: FastAPI) -> AsyncIterator[None]:
    """Run each app's lifespan (broker connect, topology, consumers) for the duration."""
    async with AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield


@asynccontextmanager
async def whole_system(
    intake_settings: IntakeSettings,
    agreements_settings: AgreementsSettings,
    notifications_settings: NotificationsSettings,
) -> AsyncIterator[httpx.AsyncClient]:
    """The three services running in-process (lifespans included); a client of intake's HTTP API."""
    intake_app = intake.main.create_app(intake_settings)
    apps = (
        intake_app,
        agreements.main.create_app(agreements_settings),
        notifications.main.create_app(notifications_settings),
    )
    async with serving(*apps), client(intake_app) as http:
        yield http


def client(app: FastAPI, client_ip: str = "203.0.113.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(client_ip, 51515))
    return httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers={"User-Agent": "pytest-browser/1.0"}
    )


def http_server(app: FastAPI) -> AbstractAsyncContextManager[str]:
    """Serve ``app`` with uvicorn on a loopback port, in this event loop, lifespan included; its URL."""
    return uvicorn_serving(app, lifespan="on")
