"""The document checklists by jurisdiction (``document_checklists.json``: data, since Tencent changes them)."""

import re
from functools import cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

DEFAULT = "default"
ITEM_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class ChecklistItem(BaseModel):
    """One document a client may be asked for: its key, its label in both languages, whether it is sensitive
    personal data (PIPL Art. 28: only the case owner and admins download it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(pattern=ITEM_KEY.pattern)
    label: dict[str, str]
    sensitive: bool = False

    def label_in(self, locale: str) -> str:
        return self.label.get(locale) or self.label["en"]


_CHECKLISTS = TypeAdapter(dict[str, list[ChecklistItem]])


@cache
def checklists() -> dict[str, list[ChecklistItem]]:
    """Every jurisdiction's list by ISO country code, and ``default`` for the others."""
    text = resources.files("casework").joinpath("document_checklists.json").read_text(encoding="utf-8")
    loaded = _CHECKLISTS.validate_json(text)
    if DEFAULT not in loaded:
        raise ValueError("document_checklists.json has no default list")
    return loaded


def checklist_for(country: str | None) -> list[ChecklistItem]:
    """The checklist of a company registered in ``country`` (the default list for a country without its own)."""
    lists = checklists()
    return list(lists.get((country or "").upper(), lists[DEFAULT]))


def known_items() -> dict[str, ChecklistItem]:
    """Every item any checklist names, by key (a jurisdiction's wording wins over the default's)."""
    items: dict[str, ChecklistItem] = {}
    for name, listed in sorted(checklists().items(), key=lambda pair: pair[0] != DEFAULT):
        for item in listed:
            if name == DEFAULT or item.key not in items:
                items[item.key] = item
    return items
