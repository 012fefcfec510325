"""What the lifespan puts on the app for the routes, typed: the open adapters."""

from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:  # casework.main installs the routes that read this
    from casework.main import Adapters


def adapters_of(request: Request) -> "Adapters":
    adapters: Adapters = request.app.state.adapters
    return adapters
