"""Load a page in headless Chromium and record what happened, over the DevTools protocol.

The protocol runs over ``--remote-debugging-pipe`` (file descriptors 3 and 4 of
the browser, NUL-terminated JSON messages), so no WebSocket library and no
open port are needed. Every console message, exception, log entry (CSP
violations land there), network request and JavaScript dialog is recorded.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageLoad:
    """What loading one page produced."""

    console: list[dict] = field(default_factory=list)
    exceptions: list[dict] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[dict] = field(default_factory=list)
    facts: dict = field(default_factory=dict)


class Browser:
    """One headless Chromium with a fresh profile, driven over the DevTools pipe."""

    def __init__(self, executable: str, timeout: float = 30.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="diagnose-chromium-")
        commands_read, self._commands = os.pipe()
        self._events, events_write = os.pipe()
        # The browser expects the pipe on fds 3 and 4: park both ends above them first.
        child_in = fcntl.fcntl(commands_read, fcntl.F_DUPFD, 10)
        child_out = fcntl.fcntl(events_write, fcntl.F_DUPFD, 10)
        os.close(commands_read)
        os.close(events_write)

        def to_fds_3_and_4():
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=to_fds_3_and_4,
            pass_fds=(3, 4, child_in, child_out),
        )
        os.close(child_in)
        os.close(child_out)
        self._buffer = b""
        self._next_id = 0
        self._pending: list[dict] = []

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001 - the browser may be gone already
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._events)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- protocol

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._pending.append(reply)

    def _read(self, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._events], [], [], left)[0]:
                raise TimeoutError("no message from chromium")
            chunk = os.read(self._events, 1 << 20)
            if not chunk:
                stderr = self.process.stderr.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"chromium exited: {stderr}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def _events_until(self, done, timeout: float) -> list[dict]:
        """Events (queued and new) until ``done(event)`` is true or ``timeout`` passes."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            if self._pending:
                event = self._pending.pop(0)
            else:
                try:
                    event = self._read(max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    return seen
            seen.append(event)
            if done(event):
                return seen

    # -- one page

    def load(self, url: str, screenshots: dict[str, Path] | None = None, javascript: bool = True,
             facts_script: str = "({})", width: int = 1280, height: int = 900) -> PageLoad:
        """Open ``url`` in a new tab; record events; evaluate ``facts_script``; take screenshots.

        ``screenshots``: ``{"viewport": path, "full": path}`` (either optional).
        """
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        if not javascript:
            self.send("Emulation.setScriptExecutionDisabled", {"value": True}, session=session)
        self._pending.clear()
        self.send("Page.navigate", {"url": url}, session=session)
        events = self._events_until(
            lambda e: e.get("method") == "Page.loadEventFired" and e.get("sessionId") == session, self.timeout)
        events += self._events_until(lambda e: False, 0.5)  # late errors
        result = PageLoad()
        for event in events:
            if event.get("sessionId") != session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled":
                result.console.append({"type": params.get("type"),
                                       "text": " ".join(str(a.get("value", a.get("description")))
                                                        for a in params.get("args", []))})
            elif method == "Runtime.exceptionThrown":
                result.exceptions.append(params.get("exceptionDetails", {}))
            elif method == "Log.entryAdded":
                result.log.append(params.get("entry", {}))
            elif method == "Network.requestWillBeSent":
                result.requests.append(params.get("request", {}).get("url", ""))
            elif method == "Page.javascriptDialogOpening":
                result.dialogs.append(params)
        evaluated = self.send("Runtime.evaluate", {"expression": facts_script, "returnByValue": True},
                              session=session)
        result.facts = evaluated.get("result", {}).get("value") or {}
        for kind, path in (screenshots or {}).items():
            params = {"format": "png"}
            if kind == "full":
                size = self.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
                params.update(captureBeyondViewport=True,
                              clip={"x": 0, "y": 0, "width": width, "height": min(size["height"], 16000),
                                    "scale": 1})
            shot = self.send("Page.captureScreenshot", params, session=session)
            Path(path).write_bytes(base64.b64decode(shot["data"]))
        self.send("Target.closeTarget", {"targetId": target})
        return result
