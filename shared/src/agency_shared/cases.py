"""Case ids, as casework derives them and other services name a case (notifications' portal links)."""

import uuid
from typing import Literal

from agency_shared.events import derived_id

CaseKindName = Literal["application", "enquiry"]


def case_id_of(subject_id: uuid.UUID, kind: CaseKindName = "application") -> uuid.UUID:
    """A case's id follows from what it is about (an application or an enquiry), so opening it twice is one case."""
    return derived_id("case", kind, str(subject_id))
