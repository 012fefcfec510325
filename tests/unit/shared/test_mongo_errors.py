"""Which refusals of a batched write mean "stored before": only duplicate keys, never a write-concern error."""

import pytest
from pymongo.errors import BulkWriteError

from agency_chassis.mongo import DUPLICATE_KEY, duplicate_keys


def refused(
    write_errors: list[dict[str, object]], write_concern_errors: list[dict[str, object]] | None = None
) -> BulkWriteError:
    return BulkWriteError(
        {"writeErrors": write_errors, "writeConcernErrors": write_concern_errors or [], "nInserted": 0}
    )


def test_duplicates_are_named_by_their_position() -> None:
    assert duplicate_keys(refused([{"index": 3, "code": DUPLICATE_KEY}, {"index": 1, "code": DUPLICATE_KEY}])) == [1, 3]


@pytest.mark.parametrize(
    "error",
    [
        refused([{"index": 0, "code": DUPLICATE_KEY}, {"index": 1, "code": 121}]),  # a document the validator refused
        refused([], [{"code": 64, "errmsg": "waiting for replication timed out"}]),  # may not be durable
        refused([{"index": 0, "code": DUPLICATE_KEY}], [{"code": 91, "errmsg": "primary stepped down"}]),
        refused([]),  # names no write at all
    ],
)
def test_anything_but_duplicates_fails_the_batch(error: BulkWriteError) -> None:
    with pytest.raises(BulkWriteError):
        duplicate_keys(error)
