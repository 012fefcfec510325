"""Versioned agreement documents shipped as data files, and which one is current."""

import hashlib
import tomllib
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from functools import cached_property
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, computed_field


class AgreementDocument(BaseModel):
    """One version of an agreement; its identity is the SHA-256 of the exact UTF-8 text."""

    model_config = ConfigDict(frozen=True)

    id: str
    version: str
    title: str
    effective_date: date
    text: str

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


class AgreementCatalog:
    """All known versions; the current one is the latest already in effect."""

    def __init__(self, documents: Iterable[AgreementDocument]) -> None:
        self._documents = sorted(documents, key=lambda d: (d.effective_date, d.version))
        if not self._documents:
            raise ValueError("an agreement catalog needs at least one document")

    @classmethod
    def bundled(cls) -> "AgreementCatalog":
        """The documents shipped in ``agency_shared/agreement_texts/*.toml``."""
        return cls.from_folder(resources.files("agency_shared") / "agreement_texts")

    @classmethod
    def from_folder(cls, folder: Traversable | Path) -> "AgreementCatalog":
        """Every ``*.toml`` version file in ``folder``: adding a version is adding a file."""
        documents = [
            AgreementDocument.model_validate(tomllib.loads(entry.read_text(encoding="utf-8")))
            for entry in folder.iterdir()
            if entry.name.endswith(".toml")
        ]
        return cls(documents)

    @classmethod
    def configured(cls, folder: Path | None) -> "AgreementCatalog":
        return cls.bundled() if folder is None else cls.from_folder(folder)

    def current(self, today: date | None = None) -> AgreementDocument:
        # The UTC day, so replicas in different time zones agree on when a version takes effect.
        today = today or datetime.now(UTC).date()
        in_effect = [d for d in self._documents if d.effective_date <= today]
        return in_effect[-1] if in_effect else self._documents[0]

    def find(self, version: str) -> AgreementDocument | None:
        return next((d for d in self._documents if d.version == version), None)

    def __iter__(self) -> Iterator[AgreementDocument]:
        return iter(self._documents)
