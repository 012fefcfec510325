"""Re-acceptance in the portal: when the case's application accepted an older agreement version than the current
one, the client reads the current text and accepts it; casework keeps what it observed and announces
``agreement.reaccepted`` (publisher confirms); agreements records it in the hash-chained ledger."""

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agency_shared.events import AgreementReaccepted, AgreementReacceptedData, Event, derived_id
from casework.agreements_client import AgreementsClient, AgreementsUnavailable
from casework.cases import Case, HistoryEntry
from casework.handling import Publish
from casework.storage import MongoCases

logger = logging.getLogger(__name__)
MAX_USER_AGENT = 512


class AgreementMoved(Exception):
    """The version or text the client accepted is not the current one any more (a new version took effect)."""


class NotRecorded(Exception):
    """The broker did not confirm the announcement: kept, and the client is asked to try again."""


@dataclass(frozen=True)
class Reacceptance:
    """What the portal shows about the agreement: the current version (None: agreements unreachable), whether the
    case's application must accept it, and whether its acceptance is recorded."""

    current: dict[str, Any] | None
    required: bool
    recorded: bool


def accepted_version(case: Case) -> str | None:
    return str(case.acceptance["agreement_version"]) if case.acceptance else None


async def reacceptance_of(case: Case, agreements: AgreementsClient, cases: MongoCases) -> Reacceptance:
    if case.application_id is None or accepted_version(case) is None:
        return Reacceptance(None, False, False)
    try:
        current = await agreements.current_agreement()
    except AgreementsUnavailable as exc:
        logger.warning("portal: the current agreement is unknown (%s)", exc)
        return Reacceptance(None, False, False)
    if current["version"] == accepted_version(case):
        return Reacceptance(current, False, False)
    stored = await cases.reacceptance(case.id, current["version"])
    recorded = stored is not None and stored.get("published_at") is not None
    return Reacceptance(current, not recorded, recorded)


def _aware(moment: datetime) -> datetime:
    """PyMongo returns naive UTC datetimes unless the client is tz_aware."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def reaccepted_event(stored: dict[str, Any], correlation_id: str) -> AgreementReaccepted:
    """The announcement of a stored re-acceptance: the same one whatever delivers it (its id from the application
    and version)."""
    return AgreementReaccepted(
        event_id=derived_id(AgreementReaccepted.routing_key, stored["application_id"], stored["version"]),
        correlation_id=correlation_id,
        data=AgreementReacceptedData(
            application_id=uuid.UUID(stored["application_id"]),
            case_id=uuid.UUID(stored["case_id"]),
            agreement_id=stored["agreement_id"],
            agreement_version=stored["version"],
            agreement_sha256=stored["sha256"],
            accepted_at=_aware(stored["accepted_at"]),
            client_ip=stored["client_ip"],
            user_agent=stored["user_agent"],
            locale=stored["locale"],
        ),
    )


async def reaccept(
    case: Case,
    version: str,
    sha256: str,
    client_ip: str,
    user_agent: str,
    now: datetime,
    agreements: AgreementsClient,
    cases: MongoCases,
    publish: Publish,
) -> None:
    """Keep the client's acceptance of ``version`` (whose text hashes to ``sha256``: what the page showed) and
    announce it; ``AgreementMoved`` if that is not the current version's, ``NotRecorded`` if the broker did not
    confirm (kept: trying again announces the same event)."""
    assert case.application_id is not None
    current = await agreements.current_agreement()
    if current["version"] != version or current["sha256"] != sha256:
        raise AgreementMoved(f"accepted {version[:40]!r}, the current version is {current['version']!r}")
    record = {
        "application_id": str(case.application_id),
        "agreement_id": str(current.get("id") or ""),
        "version": version,
        "sha256": sha256,
        "accepted_at": now,
        "client_ip": client_ip,
        "user_agent": user_agent[:MAX_USER_AGENT],
        "locale": case.locale,
        "published_at": None,
    }
    entry = HistoryEntry(key=f"reaccepted:{version}", kind="reaccepted", at=now, text=version)
    stored = await cases.keep_reacceptance(case, record, entry)
    event: Event = reaccepted_event(stored, f"case-{case.reference}")
    try:
        await publish(event)
    except Exception as exc:
        raise NotRecorded(f"agreement.reaccepted of {case.reference} not confirmed: {exc!r}") from exc
    await cases.reacceptance_published(case.id, version, now)
    logger.info("case %s: the client re-accepted agreement version %s", case.reference, version)


async def publish_unannounced_reacceptances(cases: MongoCases, publish: Publish, now: datetime) -> int:
    """Announce the re-acceptances kept but never confirmed by the broker (an outage when the client accepted, a
    crash), a minute old or more: the ledger gets each, the event's id making a repeat one link."""
    published = 0
    try:
        for stored in await cases.unpublished_reacceptances(now - timedelta(minutes=1)):
            await publish(reaccepted_event(stored, f"reacceptance-sweep-{stored['case_id']}"))
            await cases.reacceptance_published(uuid.UUID(stored["case_id"]), stored["version"], now)
            published += 1
    except Exception as exc:  # a database or broker outage: the next sweep tries again
        logger.warning("announcing kept re-acceptances failed (%r): the next sweep tries again", exc)
    return published
