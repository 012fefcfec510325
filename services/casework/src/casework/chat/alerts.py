"""The staff alerts other modules raise (``raise_alert``), stored for each configured robot and sent by one sender
per robot across the replicas."""

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from casework.chat.channels import Channel, DingTalk, Feishu, Slack, WeCom
from casework.chat.messages import Alert
from casework.chat.sender import Pacing, Robot, RobotSender
from casework.chat.store import ChatStore
from casework.settings import CaseworkSettings

logger = logging.getLogger(__name__)


def configured_robots(settings: CaseworkSettings) -> list[Robot]:
    """A robot for each configured URL, its id from a hash of the URL (logs and the database never hold a URL)."""
    secret = settings.chat_dingtalk_secret.get_secret_value() if settings.chat_dingtalk_secret else None
    feishu_secret = settings.chat_feishu_secret.get_secret_value() if settings.chat_feishu_secret else None
    by_channel: list[tuple[Channel, list[Any]]] = [
        (WeCom(), settings.chat_wecom_urls),
        (DingTalk(secret), settings.chat_dingtalk_urls),
        (Feishu(feishu_secret), settings.chat_feishu_urls),
        (Slack(), settings.chat_slack_urls),
    ]
    robots: dict[str, Robot] = {}
    for channel, urls in by_channel:
        for secret_url in urls:
            url = secret_url.get_secret_value()
            robot_id = f"{channel.name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"
            robots[robot_id] = Robot(robot_id, channel, url)  # the same URL twice is one robot
    return list(robots.values())


class ChatAlerts:
    """``raise_alert`` stores an alert once per robot; ``open`` starts this replica's senders (one per robot, only
    the lease holder's sends); without robots configured both do nothing."""

    def __init__(self, settings: CaseworkSettings) -> None:
        self._settings = settings
        self.robots = configured_robots(settings)
        self.holder = uuid.uuid4().hex  # this replica, as the leases name it
        self._store: ChatStore | None = None
        self._http: httpx.AsyncClient | None = None
        self._senders: list[RobotSender] = []
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def enabled(self) -> bool:
        return bool(self.robots)

    async def open(self, client: AsyncMongoClient[dict[str, Any]], db: str) -> None:
        if not self.robots:
            return
        settings = self._settings
        self._store = ChatStore(client, db)
        await self._store.ensure_indexes()
        self._http = httpx.AsyncClient(timeout=settings.chat_timeout_seconds, follow_redirects=False)
        pacing = Pacing(
            settings.chat_max_attempts,
            settings.chat_retry_base_seconds,
            settings.chat_retry_max_seconds,
            settings.chat_lease_seconds,
            settings.chat_time_scale,
            settings.chat_timeout_seconds,
        )
        self._senders = [
            RobotSender(robot, self._store, self._http, pacing, self.holder, settings.console_url, settings.chat_locale)
            for robot in self.robots
        ]
        self._tasks = [asyncio.create_task(sender.run(), name=f"chat {sender.robot.id}") for sender in self._senders]
        logger.info("chat alerts go to %s", ", ".join(robot.id for robot in self.robots))

    async def raise_alert(self, alert: Alert) -> None:
        """Store ``alert`` for every robot (once: the same key again is ignored) and wake this replica's senders."""
        if self._store is None:
            return
        now = time.time()
        for robot in self.robots:
            if not await self._store.add(robot.id, alert, now):
                logger.info("chat alert %s about %s was raised already", alert.kind, alert.reference)
        for sender in self._senders:
            sender.woken.set()

    async def close(self) -> None:
        for sender in self._senders:
            sender.stop()
        if self._tasks:
            # A message on its way is let finish and recorded as sent: cut off, it would be sent again.
            _, unfinished = await asyncio.wait(self._tasks, timeout=self._settings.chat_timeout_seconds + 5)
            for task in unfinished:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks = []
        for sender in self._senders:
            with contextlib.suppress(Exception):  # the database may be gone: the lease then simply expires
                await sender.release()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
