"""A service's AsyncAPI document: built from its broker without connecting, rendered deterministically, served."""

import json
from collections.abc import Sequence
from typing import Any

import yaml
from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, Response
from faststream.rabbit import RabbitBroker
from faststream.specification import AsyncAPI, get_asyncapi_html

from agency_chassis.publishing import declare_publishers
from agency_shared.events import Event

ASYNCAPI_VERSION = "3.0.0"
# Maps whose order only reflects the order handlers and publishers were registered in:
# sorted, so a document changes only when the events or queues do.
SORTED_MAPS = (("servers",), ("channels",), ("operations",), ("components", "messages"), ("components", "schemas"))


class EventDocument:
    """The AsyncAPI document of one broker: its subscribers (queues, handlers, payloads) and declared publishers."""

    def __init__(self, broker: RabbitBroker, *, title: str, version: str, description: str) -> None:
        self._factory = AsyncAPI(
            broker, title=title, version=version, description=description, schema_version=ASYNCAPI_VERSION
        )
        self._document: dict[str, Any] | None = None

    def jsonable(self) -> dict[str, Any]:
        """Built on first use, once the broker has every subscriber and publisher."""
        if self._document is None:
            self._document = canonical(self._factory.to_specification().to_jsonable())
        return self._document

    def to_json(self) -> str:
        return json.dumps(self.jsonable(), indent=2, ensure_ascii=False) + "\n"

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.jsonable(), sort_keys=False, allow_unicode=True, width=120)

    def to_html(self) -> str:
        # The AsyncAPI React component, without FastStream's "try it" plugin (it would publish for real).
        return get_asyncapi_html(self._factory.to_specification(), try_it_out_path=None)


def canonical(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the version first and the registration-ordered maps sorted (schemas keep field order)."""
    for path in SORTED_MAPS:
        *parents, last = path
        node = document
        for key in parents:
            node = node.get(key, {})
        if isinstance(node.get(last), dict):
            node[last] = dict(sorted(node[last].items()))
    return {"asyncapi": document.pop("asyncapi"), **document}


def asyncapi_router(document: EventDocument) -> APIRouter:
    """``/asyncapi.json``, ``/asyncapi.yaml`` and an HTML page at ``/asyncapi``; not in the OpenAPI document."""
    router = APIRouter(include_in_schema=False)

    @router.get("/asyncapi.json")
    async def asyncapi_json() -> Response:
        return Response(document.to_json(), media_type="application/json")

    @router.get("/asyncapi.yaml")
    async def asyncapi_yaml() -> Response:
        return Response(document.to_yaml(), media_type="application/yaml")

    @router.get("/asyncapi")
    async def asyncapi_page() -> HTMLResponse:
        return HTMLResponse(document.to_html())

    return router


def document_events(
    app: FastAPI, broker: RabbitBroker, *, publishes: Sequence[type[Event]], description: str
) -> EventDocument:
    """Declare what ``broker`` publishes, and serve its document from ``app`` (kept as ``app.state.asyncapi``)."""
    declare_publishers(broker, *publishes)
    document = EventDocument(broker, title=app.title, version=app.version, description=description)
    app.state.asyncapi = document
    app.include_router(asyncapi_router(document))
    return document
