"""Several apps in one process (the test suite, a bench) register their metrics once and count into one registry."""

from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from agency_chassis.metrics import exposition
from tests.support.apps import built_apps, client
from tests.support.metrics import parse, value

SERVICES = ("intake", "agreements", "notifications")


async def test_several_apps_in_one_process_share_the_metrics() -> None:
    # Each create_app registers FastStream's collectors and our middlewares: a second must not clash.
    first, second = built_apps(), built_apps()
    before = parse(exposition().decode())
    for apps in (first, second):
        for app in apps.values():
            async with client(app) as http:
                assert (await http.get("/healthz")).status_code == 200

    scrapes = []
    for apps in (first, second):
        async with client(apps["intake"]) as http:
            scrapes.append((await http.get("/metrics")).text)
    for scraped in scrapes:
        families = Counter(family.name for family in text_string_to_metric_families(scraped))
        assert [name for name, count in families.items() if count > 1] == []
        assert {"wechat_http_requests", "faststream_received_messages", "faststream_published_messages"} <= set(
            families
        )
        # Whichever app answers, it reports the requests every app of every service counted.
        samples = parse(scraped)
        for service in SERVICES:
            healthz = {"service": service, "route": "/healthz", "method": "GET", "status": "200"}
            counted = value(samples, "wechat_http_requests_total", **healthz)
            assert counted - value(before, "wechat_http_requests_total", **healthz) == 2, service
