"""Playwright helpers for the console's browser tests: Debian's chromium (never `playwright install`), a desktop
and a phone context, signing in as a demo identity, and screenshots written to .state/screenshots/.

    with chromium() as browser:
        page = desktop(browser).new_page()
        login(page, base, "operator")
        shoot(page, "operator-desk")
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from services.common.settings import REPO_ROOT

CHROMIUM = Path(os.environ.get("CITYOPS_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = REPO_ROOT / ".state" / "screenshots"
DESKTOP = {"viewport": {"width": 1366, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


def available() -> str | None:
    """Why browser tests cannot run here (None when they can): the reason a test skip names."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return f"no chromium at {CHROMIUM} (deploy/system-deps.sh installs Debian's)"
    return None


@contextmanager
def chromium(headless: bool = True) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=headless, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def desktop(browser: Any, **options: Any) -> Any:
    return browser.new_context(**(DESKTOP | {"locale": "zh-CN"} | options))


def phone(browser: Any, **options: Any) -> Any:
    return browser.new_context(**(PHONE | {"locale": "zh-CN"} | options))


def login(page: Any, base: str, user: str, lang: str | None = None) -> None:
    """Sign in on the login page as the demo identity `user` (e.g. "operator", "unit:water",
    "grid-worker:grid-east-1-a-1"); waits until the role's home page has loaded."""
    page.goto(f"{base}/console/login" + (f"?lang={lang}" if lang else ""))
    page.select_option("#login-user", user)
    page.click("form[action='/console/login'] button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/(?!login).*"))


def shoot(page: Any, name: str, full_page: bool = True) -> Path:
    """A PNG of the page as `<name>.png` in .state/screenshots/ (gitignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
