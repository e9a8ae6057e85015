"""Look at the HTML report the way a person does: headless Chromium (Debian `chromium`) driven over the DevTools
protocol (a websocket, aiohttp), no Selenium or Playwright. Opens the report, reads the tree of plans, opens a
test result with a plot, expands its image attachments and takes a screenshot."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from rig.errors import RigError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
WINDOW = (1400, 1100)

# In the report page: a test result with an image attachment, the first whose name contains wanted[0], else
# wanted[1], ... ("" takes any).
FIND_TEST_WITH_IMAGE = """
(wanted) => {
  const data = window.allureReportData || {};
  const hasImage = (steps) => (steps || []).some(s => s.type === 'attachment'
      ? (s.link && (s.link.contentType || '').startsWith('image/')) : hasImage(s.steps));
  const results = Object.keys(data).filter(k => k.startsWith('data/test-results/')).sort().map(key =>
      JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(data[key]), c => c.charCodeAt(0)))));
  for (const part of wanted) {
    const found = results.find(r => r.name.includes(part) && hasImage(r.steps));
    if (found) return {id: found.id, name: found.name};
  }
  return null;
}
"""
TREE = """() => ({
  sections: [...document.querySelectorAll('[data-testid="tree-section-title"]')].map(e => e.textContent.trim()),
  leaves: [...document.querySelectorAll('[data-testid="tree-leaf-title"]')].map(e => e.textContent.trim()),
})"""
EXPAND_SECTIONS = """() => {
  const content = '[data-testid="tree-content"]';
  const closed = [...document.querySelectorAll('[data-testid="tree-section"]')]
      .filter(section => !section.nextElementSibling?.matches(content));
  closed.forEach(section => section.querySelector('[data-testid="tree-arrow"]').click());
  return closed.length;
}"""
OPEN_IMAGES = """() => {
  let clicked = 0;
  for (const header of document.querySelectorAll('[data-testid="test-result-attachment-header"]')) {
    const box = header.closest('[data-testid="test-result-attachment"]');
    if (header.textContent.includes('image/') && !box.querySelector('img')) {
      header.querySelector('button').click();
      clicked++;
    }
  }
  return clicked;
}"""
IMAGES = """() => [...document.querySelectorAll('[data-testid="test-result-attachment"] img')].map(img => ({
  name: img.closest('[data-testid="test-result-attachment"]')
        .querySelector('[data-testid="test-result-attachment-header"]').textContent.trim(),
  width: img.naturalWidth, height: img.naturalHeight, complete: img.complete, src: img.src.slice(0, 5)}))"""


KEYS = {"Enter": (13, "\r"), "Tab": (9, "\t")}  # key: (virtual key code, text typed)
CENTRE_OF = """(s) => {
  const e = document.querySelector(s);
  if (!e) return null;
  e.scrollIntoView({block: 'center'});
  const r = e.getBoundingClientRect();
  return r.width && r.height ? {x: r.left + r.width / 2, y: r.top + r.height / 2} : null;
}"""


@dataclass
class ReportView:
    """What the rendered report showed: tree titles (sections = epics/features, leaves = tests), the test
    result opened, its image attachments as rendered (name, natural size) and the screenshot taken."""

    sections: list[str] = field(default_factory=list)
    leaves: list[str] = field(default_factory=list)
    test: str | None = None
    images: list[dict] = field(default_factory=list)
    text: str = ""
    screenshot: Path | None = None


def find_chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class _Page:
    def __init__(self, socket: aiohttp.ClientWebSocketResponse):
        self.socket = socket
        self.next_id = 0

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        await self.socket.send_json({"id": self.next_id, "method": method, "params": params})
        async for message in self.socket:
            reply = json.loads(message.data)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RigError(f"chromium: {method}: {reply['error']}")
                return reply.get("result", {})
        raise RigError(f"chromium: connection closed during {method}")

    async def evaluate(self, function: str, *args):
        expression = f"({function})({', '.join(json.dumps(a) for a in args)})"
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RigError(f"chromium: script failed: {result['exceptionDetails'].get('text')}: "
                           f"{result['exceptionDetails'].get('exception', {}).get('description', '')}")
        return result["result"].get("value")

    async def wait_for(self, function: str, what: str, timeout_s: float, *args):
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.evaluate(function, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise RigError(f"chromium: {what} not shown within {timeout_s:g} s")
            await asyncio.sleep(0.1)

    async def navigate(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def focus(self, selector: str) -> None:
        if not await self.evaluate("(s) => { const e = document.querySelector(s); if (e) e.focus(); return !!e; }",
                                   selector):
            raise RigError(f"chromium: no element {selector!r} to focus")

    async def type_text(self, text: str) -> None:
        """Type text into the focused element, as a keyboard (or a barcode scanner) does."""
        await self.call("Input.insertText", text=text)

    async def press_key(self, key: str = "Enter") -> None:
        code, text = KEYS[key]
        for kind in ("keyDown", "keyUp"):
            await self.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code,
                            nativeVirtualKeyCode=code, **({"text": text} if kind == "keyDown" and text else {}))

    async def click(self, selector: str) -> None:
        """Press and release the mouse at the middle of the element (scrolled into view)."""
        box = await self.evaluate(CENTRE_OF, selector)
        if box is None:
            raise RigError(f"chromium: no visible element {selector!r} to click")
        for kind in ("mousePressed", "mouseReleased"):
            await self.call("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left",
                            clickCount=1)

    async def text(self, selector: str) -> str | None:
        """The element's rendered text (None: no such element)."""
        return await self.evaluate("(s) => document.querySelector(s)?.innerText ?? null", selector)

    async def attribute(self, selector: str, name: str) -> str | None:
        return await self.evaluate("(s, n) => document.querySelector(s)?.getAttribute(n) ?? null", selector, name)

    async def wait_for_text(self, selector: str, wanted: str, timeout_s: float) -> str:
        """Wait until the element's text contains wanted; its text."""
        return await self.wait_for("(s, w) => { const t = document.querySelector(s)?.innerText; "
                                   "return t && t.includes(w) ? t : null; }", f"{wanted!r} in {selector}",
                                   timeout_s, selector, wanted)


async def _view(port: int, url: str, screenshot: Path | None, wanted: list[str], timeout_s: float) -> ReportView:
    async with aiohttp.ClientSession() as http:
        async with http.put(f"http://127.0.0.1:{port}/json/new?about:blank") as response:
            target = await response.json(content_type=None)
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as socket:
            page = _Page(socket)
            await page.call("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1],
                            deviceScaleFactor=1, mobile=False)
            await page.call("Page.navigate", url=url)
            view = ReportView()
            await page.wait_for("() => !!document.querySelector('[data-testid=\"tree-section-title\"]')",
                                "the report's tree", timeout_s)
            for _ in range(5):  # expand every epic and feature
                if not await page.evaluate(EXPAND_SECTIONS):
                    break
                await asyncio.sleep(0.2)
            tree = await page.evaluate(TREE)
            view.sections, view.leaves = tree["sections"], tree["leaves"]
            found = await page.evaluate(FIND_TEST_WITH_IMAGE, wanted)
            if found is None:
                raise RigError(f"{url}: no test result named like any of {wanted} has an image attachment")
            view.test = found["name"]
            await page.evaluate(f"() => {{ location.hash = '#/{found['id']}'; return true; }}")
            await page.wait_for("() => !!document.querySelector('[data-testid=\"test-result-attachment-header\"]')",
                                f"the attachments of {found['name']}", timeout_s)
            await page.evaluate(OPEN_IMAGES)
            view.images = await page.wait_for(
                "() => { const i = (" + IMAGES + ")(); return i.length && i.every(x => x.complete && x.width) && i; }",
                f"the image attachments of {found['name']}", timeout_s)
            view.text = await page.evaluate("() => document.body.innerText")
            if screenshot is not None:
                await page.evaluate("() => { document.querySelector('[data-testid=\"test-result-attachment\"] img')"
                                    ".scrollIntoView({block: 'center'}); return true; }")
                await asyncio.sleep(0.3)
                shot = await page.call("Page.captureScreenshot", format="png")
                screenshot.write_bytes(base64.b64decode(shot["data"]))
                view.screenshot = screenshot
            return view


def view_report(index: Path, screenshot: Path | None = None, *, test_names: tuple[str, ...] = ("",),
                timeout_s: float = 30.0, chromium: str | None = None) -> ReportView:
    """Open index.html in headless Chromium and read it (see ReportView). The test result opened is one with
    an image attachment, the first whose name contains test_names[0], else test_names[1], ... ("" takes any);
    screenshot: PNG of it with its images expanded."""
    with headless_chromium(timeout_s, chromium) as port:
        return asyncio.run(_view(port, index.resolve().as_uri(), screenshot, list(test_names), timeout_s))


@contextlib.contextmanager
def headless_chromium(timeout_s: float = 30.0, chromium: str | None = None) -> Iterator[int]:
    """A headless Chromium with a fresh profile for the block; yields its DevTools port (on 127.0.0.1)."""
    binary = chromium or find_chromium()
    if binary is None:
        raise RigError(f"no Chromium found (tried {', '.join(CHROMIUM_NAMES)}): apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="rig-chromium-") as profile:
        process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={profile}",
             f"--window-size={WINDOW[0]},{WINDOW[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout_s
            while not (port_file.exists() and port_file.read_text().strip()):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RigError(f"{binary} did not open its DevTools port (exit {process.poll()})")
                time.sleep(0.05)
            yield int(port_file.read_text().split()[0])
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.asynccontextmanager
async def open_page(port: int, url: str | None = None) -> AsyncIterator[_Page]:
    """A new tab of the Chromium at DevTools port, at url; typing, clicking and reading its DOM (see _Page)."""
    async with aiohttp.ClientSession() as http:
        async with http.put(f"http://127.0.0.1:{port}/json/new?about:blank") as response:
            target = await response.json(content_type=None)
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as socket:
            page = _Page(socket)
            await page.call("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1],
                            deviceScaleFactor=1, mobile=False)
            if url is not None:
                await page.navigate(url)
            yield page
