"""Browser tier: the ComfyUI frontend (served by a real server with this pack) in headless Chromium.

Chromium is Debian's ``/usr/bin/chromium`` (``.ci/run`` installs it), driven by Python Playwright
with ``executable_path``; Playwright never downloads a browser here. Flags: research notes
``ci_comfyui.md`` (headless, no sandbox, no GPU, no background networking).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest

from beyond_monologue.comfyui.comfy_client import ComfyClient
from beyond_monologue.comfyui.comfy_launcher import PACK_DIR_NAME, ComfyServer

CHROMIUM = os.environ.get("BM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
PAGE_TIMEOUT_MS = 60_000
EXTENSION_URL_PREFIX = f"/extensions/{PACK_DIR_NAME}/"

# Console errors of the ComfyUI 0.3.75 frontend (comfyui-frontend-package 1.32.9) itself, present
# on a fresh server with no custom nodes at all. Only these are ignored; everything else fails.
# 1. 404s for optional files of a fresh user folder that the frontend probes for.
NOISE_404_TEXT = "Failed to load resource: the server responded with a status of 404"
NOISE_404_PATHS = {
    "/api/userdata/user.css", "/user.css", "/favicon.ico", "/api/userdata", "/api/userdata/comfy.templates.json",
}
# 2. A frontend start-up bug: useRenderModeSetting (GraphView) sets a setting that is not registered
#    yet, so the settings store's onChange reads `.id` of undefined.
NOISE_FRONTEND_BUG = re.compile(r"^TypeError: Cannot read properties of undefined \(reading 'id'\)\s+at onChange "
                                r"\(http://[^)]*/assets/index-[^)]*\)")
# 3. The server's Content-Security-Policy (connect-src 'self') blocks the frontend's registry lookup.
NOISE_CSP = re.compile(r"^Connecting to 'https://api\.comfy\.org/.*violates the following Content Security Policy")


@dataclass
class ConsoleLog:
    """Console messages and page errors of one page."""

    errors: list[dict] = field(default_factory=list)
    extension_responses: dict[str, int] = field(default_factory=dict)

    def unexpected(self) -> list[dict]:
        """Errors that are not the documented frontend noise above (ours always count)."""
        kept = []
        for error in self.errors:
            text, url = error["text"], error.get("url", "")
            ours = EXTENSION_URL_PREFIX in text or EXTENSION_URL_PREFIX in url
            noise = (error["kind"] == "console" and text.startswith(NOISE_404_TEXT)
                     and urlparse(url).path in NOISE_404_PATHS)
            noise = noise or bool(NOISE_FRONTEND_BUG.match(text)) or bool(NOISE_CSP.match(text))
            if ours or not noise:
                kept.append(error)
        return kept


@pytest.fixture(scope="module")
def frontend_server(tmp_path_factory):
    """A ComfyUI server for the browser tier, with the tutorial marked done so the canvas shows."""
    server = ComfyServer(tmp_path_factory.mktemp("browser_base"))
    server.start()
    ComfyClient(server.url).post_json("/settings/Comfy.TutorialCompleted", True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Playwright (never a downloaded browser).

    Module-scoped: while Playwright's sync API is active an asyncio loop runs in the main thread,
    and later tiers call ``asyncio.run`` (e.g. the ``pack_nodes`` fixture).
    """
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, timeout=PAGE_TIMEOUT_MS)
        yield browser
        browser.close()


@pytest.fixture()
def comfy_page(browser, frontend_server):
    """A page with the ComfyUI frontend loaded (app, graph and every extension ready) and its console log."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    log = ConsoleLog()

    def on_response(response):
        if EXTENSION_URL_PREFIX in response.url:
            log.extension_responses[urlparse(response.url).path] = response.status

    def on_console(message):
        if message.type == "error":
            log.errors.append({"kind": "console", "text": message.text, "url": message.location.get("url", "")})

    page.on("response", on_response)
    page.on("console", on_console)
    page.on("pageerror", lambda error: log.errors.append({"kind": "pageerror", "text": f"{error}\n{error.stack}"}))
    page.goto(frontend_server.url)
    page.wait_for_function("() => window.app?.graph && window.LiteGraph && window.comfyAPI?.api?.api?.clientId")
    yield page, log
    context.close()
