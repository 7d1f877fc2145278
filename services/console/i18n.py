"""Messages in Chinese (the default) and English: `t(key, **values)` in templates.

Each page's keys are prefixed by the page ("operator.", "unit.", "board.", "story."), common ones by "common.".
A key missing from English falls back to Chinese, one missing from both shows the key (a test lists them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path

from fastapi import Request

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
LANG_COOKIE = "lang"
MESSAGES_DIR = Path(__file__).parent / "i18n"

Translate = Callable[..., str]


@lru_cache(maxsize=len(LANGUAGES))
def messages(lang: str) -> Mapping[str, str]:
    return dict(json.loads((MESSAGES_DIR / f"{lang}.json").read_text(encoding="utf-8")))


def translator(lang: str) -> Translate:
    own, fallback = messages(lang), messages(DEFAULT_LANGUAGE)

    def t(key: str, **values: object) -> str:
        text = own.get(key) or fallback.get(key) or key
        return text.format(**values) if values else text

    return t


def chosen_language(request: Request) -> str:
    """?lang= first (the switch's links), then the cookie it sets, else Chinese."""
    for candidate in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if candidate in LANGUAGES:
            return candidate
    return DEFAULT_LANGUAGE
