"""A real browser on the app: Debian's chromium driven by Playwright, and the app served by uvicorn.

The browser is ``/usr/bin/chromium`` (``make test`` installs Debian's package); Playwright's own
browser download is never used. The app runs in a uvicorn thread of the test process, on the
test's chDB (one process owns a chDB directory), so tests fill it through the offline
pipeline while the page is open. Every page a test opens records console errors, uncaught
exceptions and dialogs: :meth:`BrowserPage.assert_clean` fails the test on any of them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Error, Page, Playwright, sync_playwright
from starlette.types import ASGIApp

from feedhouse.broker import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Screenshots go to a temporary directory, or to FEEDHOUSE_SCREENSHOTS (make screenshots: docs/img).
SCREENSHOTS_ENV = "FEEDHOUSE_SCREENSHOTS"


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """``app`` on a free loopback port in a uvicorn thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="app-server", daemon=True)
    thread.start()
    try:
        ready = threading.Event()

        def started() -> None:
            while not server.started and thread.is_alive():
                ready.wait(0.02)

        started()
        if not server.started:
            raise RuntimeError("the app's server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def chromium() -> Iterator[tuple[Playwright, Browser]]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `make chromium` installs Debian's package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield playwright, browser
        finally:
            browser.close()


class BrowserPage:
    """A page of a fresh browser context (own cookies), recording what must never happen."""

    def __init__(self, browser: Browser, base_url: str, width: int = 1280, height: int = 900) -> None:
        self.base_url = base_url
        self.context = browser.new_context(viewport={"width": width, "height": height}, base_url=base_url)
        self.page: Page = self.context.new_page()
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        self.page.on("dialog", self._dialog)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} at {message.location}")

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        with suppress(Error):
            dialog.dismiss()

    def sign_in(self, token: str) -> None:
        self.page.goto("/login")
        self.page.get_by_label("Token").fill(token)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_load_state()

    def assert_clean(self, allowed_console: tuple[str, ...] = ()) -> None:
        """No console error (beyond ``allowed_console`` substrings), no uncaught error, no dialog."""
        errors = [e for e in self.console_errors if not any(part in e for part in allowed_console)]
        assert not errors, f"console errors: {errors}"
        assert not self.page_errors, f"uncaught page errors: {self.page_errors}"
        assert not self.dialogs, f"dialogs opened: {self.dialogs}"

    def no_horizontal_overflow(self) -> tuple[int, int]:
        """(document width, viewport width): the layout holds when the first is not larger."""
        width = self.page.evaluate("document.documentElement.scrollWidth")
        viewport = self.page.evaluate("window.innerWidth")
        return int(width), int(viewport)

    def screenshot(self, name: str, directory: Path, full_page: bool = False) -> Path:
        target = Path(os.environ.get(SCREENSHOTS_ENV) or directory) / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(target), full_page=full_page)
        return target

    def close(self) -> None:
        self.context.close()
