"""Building casework's inputs for tests: the events it consumes, as their publishers build them."""

from datetime import UTC, datetime

from agency_shared.events import EnquiryReceived, EnquiryReleased, EnquiryReleasedData, derived_id


def enquiry_released(enquiry: EnquiryReceived, verified_at: datetime | None = None) -> EnquiryReleased:
    """enquiry.released as notifications publishes it once the staff got ``enquiry``."""
    data = enquiry.data
    return EnquiryReleased(
        event_id=derived_id(EnquiryReleased.routing_key, str(data.enquiry_id)),
        correlation_id=enquiry.correlation_id,
        occurred_at=datetime.now(UTC),
        data=EnquiryReleasedData(
            enquiry_id=data.enquiry_id,
            enquiry=data.enquiry,
            received_at=data.received_at,
            locale=data.locale,
            verified_at=verified_at,
        ),
    )
