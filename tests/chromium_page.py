"""Open an HTML file in headless Chromium and report what a reader would see.

Chromium is driven through its DevTools protocol over ``--remote-debugging-pipe`` (JSON messages
separated by NUL bytes on file descriptors 3 and 4), so no websocket client is needed.
:func:`render` returns every image's load state, the console errors (console.error, uncaught
exceptions, failed loads) and a PNG screenshot.

    python tests/chromium_page.py report.html docs/report.png [WIDTH HEIGHT]

writes the screenshot (the README's docs/report.png is made this way).
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import pathlib
import select
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")

_IMAGES_JS = ("JSON.stringify(Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, "
              "width: i.naturalWidth, height: i.naturalHeight})))")


def find_chromium() -> Optional[str]:
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class _Pipe:
    """One DevTools connection: send commands, collect events, wait for replies."""

    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int):
        self.proc, self.out, self.inp = proc, to_browser, from_browser
        self.buf = b""
        self.next_id = 0
        self.events: List[Dict[str, Any]] = []

    def _read_message(self, deadline: float) -> Dict[str, Any]:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.inp], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self.inp, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the DevTools pipe (exit code {self.proc.poll()})")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: Optional[str] = None, timeout: float = 30.0, **params: Any) -> Dict:
        self.next_id += 1
        msg: Dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.out, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while True:
            ev = self._read_message(deadline)
            self.events.append(ev)
            if ev.get("method") == method:
                return ev


def _console_errors(events: List[Dict[str, Any]]) -> List[str]:
    errors = []
    for ev in events:
        m, p = ev.get("method"), ev.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description", "")))
                                                                  for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            errors.append("exception: " + str(d.get("exception", {}).get("description", d.get("text"))))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            errors.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}".strip())
    return errors


def render(html_path: str, width: int = 1200, height: int = 900, full_page: bool = False,
           timeout: float = 60.0) -> Dict[str, Any]:
    """Load html_path in headless Chromium; returns {"images": [...], "errors": [...], "png": bytes,
    "title": str}."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no chromium on PATH (Debian: apt-get install chromium)")
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="pycnn-chromium-")

    def child_fds() -> None:  # the browser reads commands on fd 3 and writes replies on fd 4
        a = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10)
        b = fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
        os.dup2(a, 3)
        os.dup2(b, 4)

    args = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
            f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            close_fds=False, preexec_fn=child_fds)
    os.close(to_r)
    os.close(from_w)
    pipe = _Pipe(proc, to_w, from_r)
    try:
        target = pipe.call("Target.createTarget", url="about:blank", timeout=timeout)["targetId"]
        session = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            pipe.call(f"{domain}.enable", session)
        pipe.call("Emulation.setDeviceMetricsOverride", session, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        pipe.events.clear()
        pipe.call("Page.navigate", session, url=pathlib.Path(os.path.abspath(html_path)).as_uri())
        pipe.wait_for("Page.loadEventFired", timeout=timeout)
        images = json.loads(pipe.call("Runtime.evaluate", session, expression=_IMAGES_JS,
                                      returnByValue=True)["result"]["value"])
        title = pipe.call("Runtime.evaluate", session, expression="document.title",
                          returnByValue=True)["result"]["value"]
        shot = pipe.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=full_page,
                         timeout=timeout)
        errors = _console_errors(pipe.events)
        try:
            pipe.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError):
            pass
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(to_w)
        os.close(from_r)
        shutil.rmtree(profile, ignore_errors=True)
    return {"images": images, "errors": errors, "png": base64.b64decode(shot["data"]), "title": title}


if __name__ == "__main__":
    if len(sys.argv) not in (3, 5):
        sys.exit(__doc__)
    size = [int(v) for v in sys.argv[3:5]] or [1200, 900]
    page = render(sys.argv[1], *size)
    pathlib.Path(sys.argv[2]).write_bytes(page["png"])
    print(f"{sys.argv[2]}: {len(page['png']):,} bytes; images {[(i['width'], i['height']) for i in page['images']]}; "
          f"errors {page['errors']}")
