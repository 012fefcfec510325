"""A service puts only the queue policies its vhost does not already hold as chosen: replicas starting side by side
put none (each PUT makes RabbitMQ re-apply the policy to every queue it matches)."""

from typing import Any

import pytest

from agency_chassis.policies import Limits, Management, policies

CHOSEN = policies(Limits(max_length=1000, dead_letter_retention_days=30))
VHOST = "wechat/agency"


class VhostPolicies:
    """The management API of one vhost, as a dict of its policies; records the calls made."""

    def __init__(self, held: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
        self.held = held
        self.calls: list[tuple[str, str]] = []
        monkeypatch.setattr(Management, "request", lambda _, method, path, body=None: self.answer(method, path, body))

    def answer(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        self.calls.append((method, path))
        if method == "GET":
            return [{"vhost": VHOST, "name": name, **policy} for name, policy in self.held.items()]
        assert body is not None
        self.held[path.rsplit("/", 1)[1]] = body
        return None

    def put(self) -> list[str]:
        return [path.rsplit("/", 1)[1] for method, path in self.calls if method == "PUT"]


def management() -> Management:
    return Management(base_url="http://rabbit:15672", vhost=VHOST, username="u", password="p")


async def test_an_empty_vhost_gets_every_policy_then_a_second_replica_puts_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = VhostPolicies({}, monkeypatch)
    assert await management().apply(CHOSEN) == len(CHOSEN)
    assert api.calls[0] == ("GET", "/policies/wechat%2Fagency")
    assert api.put() == [policy.name for policy in CHOSEN]
    api.calls.clear()
    assert await management().apply(CHOSEN) == 0
    assert api.calls == [("GET", "/policies/wechat%2Fagency")]


async def test_only_a_missing_or_changed_policy_is_put(monkeypatch: pytest.MonkeyPatch) -> None:
    held = {policy.name: policy.body() for policy in CHOSEN}
    first, last = CHOSEN[0], CHOSEN[-1]
    del held[first.name]
    held[last.name] = {**last.body(), "definition": {**last.definition, "message-ttl": 1}}  # an operator's edit
    api = VhostPolicies(held, monkeypatch)
    assert await management().apply(CHOSEN) == 2
    assert api.put() == [first.name, last.name]
