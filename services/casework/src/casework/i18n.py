"""The console's words in English and Simplified Chinese: one JSON catalogue per part of the console.

Each ``translations/<part>.json`` maps a key to ``{"en": ..., "zh-CN": ...}``; a key missing in one language
falls back to English, and an unknown key shows as itself (a test checks every key has both).
"""

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Literal

ConsoleLocale = Literal["en", "zh-CN"]
LOCALES: tuple[ConsoleLocale, ...] = ("en", "zh-CN")
LANGUAGE_NAMES: dict[ConsoleLocale, str] = {"en": "English", "zh-CN": "简体中文"}
LOCALE_COOKIE = "console_lang"


@cache
def catalogue() -> Mapping[str, Mapping[str, str]]:
    """Every key of every ``translations/*.json``; a key defined twice is an error (two parts would disagree)."""
    merged: dict[str, dict[str, str]] = {}
    for entry in sorted(resources.files("casework").joinpath("translations").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        for key, texts in json.loads(entry.read_text(encoding="utf-8")).items():
            if key in merged:
                raise ValueError(f"translation key {key!r} is defined twice ({entry.name})")
            merged[key] = texts
    return merged


def translate(key: str, locale: ConsoleLocale, **values: object) -> str:
    texts = catalogue().get(key)
    text = key if texts is None else texts.get(locale) or texts.get("en") or key
    return text.format(**values) if values else text


def chosen_locale(cookie: str | None, accept_language: str | None) -> ConsoleLocale:
    """The language the staff member picked (cookie), else the browser's first of ours, else English."""
    if cookie in LOCALES:
        return cookie  # narrowed to ConsoleLocale by the membership test
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return "en"
