"""Dead letters (admin): what died where and why (never the message bodies), and putting chosen ones back."""

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from agency_chassis.dead_letters import list_dead_letters, replay
from agency_chassis.publishing import PublishFailed
from casework.access import Permission, StaffMember, require
from casework.console.pages import PageProblem, audit, shows_problems
from casework.web import render

logger = logging.getLogger(__name__)
router = APIRouter()
Replayer = Annotated[StaffMember, Depends(require(Permission.REPLAY_DEAD_LETTERS))]
MAX_CHOSEN = 500
MAX_ID_LENGTH = 200


def _broker_problem(exc: Exception) -> PageProblem:
    logger.warning("the dead letters could not be read: %r", exc)
    return PageProblem(503, "problem.broker_unavailable", detail="the message broker is unreachable")


@router.get("/console/dead-letters")
@shows_problems
async def dead_letter_list(request: Request, staff: Replayer) -> Response:
    try:
        letters = await list_dead_letters(request.app.state.amqp_url)
    except OSError as exc:  # aio-pika's connection errors are ConnectionErrors
        raise _broker_problem(exc) from None
    return render(request, "dead_letters.html", {"letters": letters})


@router.post("/console/dead-letters/replay")
@shows_problems
async def replay_dead_letters(
    request: Request,
    staff: Replayer,
    message_id: Annotated[list[str] | None, Form()] = None,
) -> Response:
    chosen = [value.strip() for value in message_id or [] if value.strip()]
    if not chosen or len(chosen) > MAX_CHOSEN or any(len(value) > MAX_ID_LENGTH for value in chosen):
        raise PageProblem(
            422,
            "problem.replay_choose",
            field="message_id",
            detail="choose the dead letters to replay",
            back="/console/dead-letters",
        )
    try:
        done = await replay(request.app.state.amqp_url, chosen)
    except (OSError, PublishFailed) as exc:
        raise _broker_problem(exc) from None
    moved = [letter.message_id or "" for letter in done.moved]
    await audit(
        request,
        "replay",
        ",".join(moved) or None,
        {"chosen": str(len(chosen)), "moved": str(len(moved)), "kept": str(len(done.kept))},
    )
    context = {"moved": done.moved, "kept": done.kept, "letters": await list_dead_letters(request.app.state.amqp_url)}
    return render(request, "dead_letters.html", context)
