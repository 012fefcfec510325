"""Application statuses as they cross the wire: the status API, staff filters and exports show these values."""

from agency_shared.application_status import Status


def test_the_statuses_and_their_values_are_the_published_ones_in_order() -> None:
    assert [status.value for status in Status] == [
        "received",
        "recorded",
        "awaiting_verification",
        "verified",
        "confirmed",
    ]
    assert f"{Status.RECORDED}" == "recorded"  # written into documents and JSON as the bare value


def test_a_status_is_reached_only_from_the_ones_before_it() -> None:
    assert Status.RECEIVED.earlier() == []
    assert Status.VERIFIED.earlier() == [Status.RECEIVED, Status.RECORDED, Status.AWAITING_VERIFICATION]
    assert Status.CONFIRMED not in Status.CONFIRMED.earlier()
