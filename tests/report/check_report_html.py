#!/usr/bin/env python3
"""Opens HTML pages (report.html) in headless Chromium and checks what a reader would see.

Usage:
  check_report_html.py PAGE.html [PAGE.html ...] [--screenshot-dir DIR] [--min-figures N]
  check_report_html.py --self-test --workdir DIR

For every page: it loads from the file with no request other than the page itself (no network, no other
file: the report is self-contained), no console error, no log error, no uncaught exception; it has at least
--min-figures graphics, and every <svg>/<img>/<canvas> (and every <figure>) has a non-zero rendered size;
every <img> decoded. A full-page screenshot goes to DIR/<page name>.png (its path is printed).
--self-test loads pages with a planted fault each (console.error, uncaught exception, <img> from http://,
a missing local file, a zero-size and a hidden figure, no figure at all) and fails unless every fault is
caught and a clean page passes, and runs a "browser" that hangs and one that exits at once: both must fail
within seconds.

Chromium is driven over the DevTools protocol on --remote-debugging-pipe (fd 3: commands in, fd 4: replies
and events out, each message JSON ended by a NUL byte), which needs nothing beyond Python's standard library.
Every wait has a deadline: a hung browser fails the check, it never hangs it. Exit 0: all pages pass; 1: a
page fails or the browser cannot be run (no Chromium: run scripts/install-deps.sh).
"""
import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BROWSERS = ["chromium", "chromium-browser", "google-chrome"]
VIEWPORT = (1400, 1000)       # CSS pixels; the report's body is at most 1300 px wide
MAX_SCREENSHOT_HEIGHT = 30000  # CSS pixels; a taller page is cut there (the image stays one PNG)
LOCAL_SCHEMES = ("data:", "blob:", "about:")
BLOCKED_URLS = ["http://*", "https://*", "ws://*", "wss://*", "ftp://*"]

# Runs in the page once it has loaded: every graphic's rendered box, every figure's box.
MEASURE_JS = """(async () => {
  await document.fonts.ready;
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const box = e => { const b = e.getBoundingClientRect(); return {width: b.width, height: b.height}; };
  const where = e => { const f = e.closest('figure'); return f ? (f.id || 'figure') : 'outside any figure'; };
  const graphics = [...document.querySelectorAll('svg, img, canvas')]
    .filter(e => !(e.parentElement && e.parentElement.closest('svg')))
    .map((e, i) => Object.assign({tag: e.tagName.toLowerCase(), index: i, where: where(e),
                                  decoded: e.tagName === 'IMG' ? (e.complete && e.naturalWidth > 0) : true}, box(e)));
  const figures = [...document.querySelectorAll('figure')].map((f, i) => Object.assign({id: f.id || `#${i}`}, box(f)));
  return {graphics, figures, title: document.title};
})()"""


class CheckError(Exception):
    """The browser could not be run or driven: the check cannot say anything about the page."""


def find_browser():
    if os.environ.get("CHROMIUM"):
        path = shutil.which(os.environ["CHROMIUM"])
        if not path:
            raise CheckError(f"CHROMIUM={os.environ['CHROMIUM']}: no such program: run scripts/install-deps.sh, "
                             "or name another Chromium")
        return path
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise CheckError(f"no Chromium found (looked for {', '.join(BROWSERS)} on PATH; CHROMIUM=... names one): "
                     "run scripts/install-deps.sh")


def high_fd(fd):
    """The same pipe end as a descriptor numbered 10 or more (close-on-exec); fd itself is closed."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Chromium:
    """One headless Chromium, spoken to over --remote-debugging-pipe."""

    def __init__(self, binary, timeout):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="sb-chromium-profile-")
        self.log_path = Path(self.profile) / "chromium.stderr"
        self.events = []
        self.next_id = 0
        self.buffer = b""
        # Chromium reads commands on fd 3 and writes on fd 4; sh puts our pipe ends there and execs it.
        # Chromium reads commands on fd 3 and writes on fd 4. Our pipe ends are moved above 9 first, so that
        # putting them on 3 and 4 in the child cannot overwrite one with the other; every other descriptor of
        # ours is close-on-exec (PEP 446).
        cmd_r, self.cmd_w = os.pipe()
        self.out_r, out_w = os.pipe()
        cmd_r, out_w = high_fd(cmd_r), high_fd(out_w)

        def onto_fds_3_and_4():  # runs in the child between fork and exec
            os.dup2(cmd_r, 3)
            os.dup2(out_w, 4)

        flags = ["--headless=new", "--remote-debugging-pipe",
                 "--no-sandbox",  # root, and containers without user namespaces, cannot start the sandbox
                 "--disable-gpu", "--no-first-run", "--no-default-browser-check", f"--user-data-dir={self.profile}",
                 "--disable-extensions", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
                 f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}", "about:blank"]
        with open(self.log_path, "wb") as log:
            try:
                self.proc = subprocess.Popen([binary, *flags], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=log, close_fds=False, preexec_fn=onto_fds_3_and_4,
                                             start_new_session=True)
            except OSError as e:
                raise CheckError(f"cannot start {binary}: {e}")
            finally:
                os.close(cmd_r)
                os.close(out_w)
        try:
            self.call("Browser.getVersion")
        except CheckError:
            self.close(kill=True)
            raise

    # -- protocol

    def _read_message(self, deadline):
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CheckError(f"Chromium did not answer within {self.timeout:g} s{self._log_tail()}")
            ready, _, _ = select.select([self.out_r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.out_r, 1 << 20)
            if not chunk:
                raise CheckError(f"Chromium closed the DevTools pipe (exit code {self.proc.poll()}){self._log_tail()}")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method, params=None, session=None):
        """Sends one command and returns its result; events that arrive meanwhile are kept in self.events."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self.cmd_w, data):]
        except OSError as e:
            raise CheckError(f"cannot send {method} to Chromium: {e}{self._log_tail()}")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise CheckError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method, session):
        deadline = time.monotonic() + self.timeout
        while True:
            for e in self.events:
                if e.get("method") == method and e.get("sessionId") == session:
                    return e
            self.events.append(self._read_message(deadline))

    def drain(self, seconds):
        """Collects events for a moment (late console messages, late requests)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.events.append(self._read_message(deadline))
            except CheckError:
                if self.proc.poll() is not None:
                    raise
                return

    def _log_tail(self):
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()[-5:]
        except OSError:
            return ""
        return ("; Chromium's stderr ends: " + " | ".join(lines)) if lines else ""

    def close(self, kill=False):
        """Asks the browser to quit; kills its process group if it does not within seconds (or if kill)."""
        try:
            if kill and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the browser's own process group (start_new_session)
                self.proc.wait(timeout=10)
            if self.proc.poll() is None:
                self.timeout = min(self.timeout, 5)
                try:
                    self.call("Browser.close")
                except CheckError:
                    pass  # it may go before it answers; a hung one is killed below
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)  # the browser's own process group (start_new_session)
                    self.proc.wait(timeout=10)
        finally:
            os.close(self.cmd_w)
            os.close(self.out_r)
            shutil.rmtree(self.profile, ignore_errors=True)


# ---------------------------------------------------------------- one page

def png_size(data):
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def check_page(browser, page, screenshot=None, min_figures=1, settle_s=0.3):
    """Loads PAGE in a fresh tab and returns (problems, facts); problems are (kind, text) pairs."""
    page = Path(page).resolve()
    url = page.as_uri()
    problems = []
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    try:
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", session=session)
        # Requests that would leave the machine are still reported (requestWillBeSent comes first), but then
        # blocked: the check stays hermetic and fast where there is no network.
        browser.call("Network.setBlockedURLs", {"urls": BLOCKED_URLS}, session)
        browser.call("Emulation.setDeviceMetricsOverride", {"width": VIEWPORT[0], "height": VIEWPORT[1],
                                                            "deviceScaleFactor": 1, "mobile": False}, session)
        first_event = len(browser.events)
        nav = browser.call("Page.navigate", {"url": url}, session)
        if nav.get("errorText"):
            return [("load", f"cannot load {url}: {nav['errorText']}")], {}
        browser.wait_event("Page.loadEventFired", session)
        measured = browser.call("Runtime.evaluate", {"expression": MEASURE_JS, "awaitPromise": True,
                                                     "returnByValue": True}, session)
        if "exceptionDetails" in measured:
            raise CheckError(f"measuring {page.name} failed: {measured['exceptionDetails'].get('text')}")
        facts = measured["result"]["value"]
        browser.drain(settle_s)

        for e in browser.events[first_event:]:
            if e.get("sessionId") != session:
                continue
            p, method = e.get("params", {}), e.get("method")
            if method == "Network.requestWillBeSent":
                req = p["request"]["url"]
                if req == url or req.startswith(LOCAL_SCHEMES):
                    continue
                if req.startswith("file:"):
                    problems.append(("file", f"loads another file (not self-contained): {req}"))
                else:
                    problems.append(("network", f"network request: {req}"))
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                problems.append(("console", f"console.{p['type']}: {text}"))
            elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
                entry = p["entry"]
                problems.append(("console", f"log error ({entry.get('source')}): {entry.get('text')} "
                                            f"{entry.get('url', '')}".rstrip()))
            elif method == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                problems.append(("exception", "uncaught exception: "
                                 + (d.get("exception", {}).get("description") or d.get("text", "")).splitlines()[0]))

        graphics = facts["graphics"]
        if len(graphics) < min_figures:
            problems.append(("figures", f"{len(graphics)} figure(s) (<svg>, <img>, <canvas>), expected at least "
                                        f"{min_figures}"))
        for g in graphics:
            if not (g["width"] > 0 and g["height"] > 0):
                problems.append(("size", f"<{g['tag']}> #{g['index']} in {g['where']} is rendered "
                                         f"{g['width']:g} x {g['height']:g} px"))
            if not g["decoded"]:
                problems.append(("size", f"<img> #{g['index']} in {g['where']} did not load"))
        for f in facts["figures"]:
            if not (f["width"] > 0 and f["height"] > 0):
                problems.append(("size", f"<figure> {f['id']} is rendered {f['width']:g} x {f['height']:g} px"))

        if screenshot:
            size = browser.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
            width, height = int(size["width"] + 0.999), min(int(size["height"] + 0.999), MAX_SCREENSHOT_HEIGHT)
            shot = browser.call("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}}, session)
            data = base64.b64decode(shot["data"])
            if not png_size(data):
                problems.append(("screenshot", "the screenshot is not a PNG"))
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            Path(screenshot).write_bytes(data)
            facts["screenshot"] = (str(screenshot), png_size(data))
        return problems, facts
    finally:
        browser.call("Target.closeTarget", {"targetId": target})


# ---------------------------------------------------------------- self-test

FIGURE_SVG = ("<svg xmlns='http://www.w3.org/2000/svg' width='300pt' height='150pt' viewBox='0 0 300 150'>"
              "<rect x='10' y='10' width='280' height='130' fill='#4c72b0'/></svg>")
PNG_1PX = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
           "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
CSS = "svg{max-width:100%;height:auto}img{width:40px;height:40px}"


def self_test_pages():
    """name -> (html body, the kind of problem that must be found; None: the page must pass)."""
    fig = f"<figure id='ok'>{FIGURE_SVG}<figcaption>fine</figcaption></figure>"
    return {
        "clean": (fig + f"<figure id='inline-png'><img src='{PNG_1PX}' alt='data URL'></figure>", None),
        "console_error": (fig + "<script>console.error('deliberate console error')</script>", "console"),
        "uncaught_exception": (fig + "<script>throw new Error('deliberate exception')</script>", "exception"),
        "external_image": (fig + "<figure><img src='http://example.com/figure.png' alt='x'></figure>",
                           "network"),
        "missing_local_file": (fig + "<figure><img src='figure_next_to_the_page.png' alt='x'></figure>", "file"),
        "zero_size_figure": (fig + "<figure id='empty'><svg width='0' height='0'></svg></figure>", "size"),
        "hidden_figure": (fig + f"<figure id='hidden' style='display:none'>{FIGURE_SVG}</figure>", "size"),
        "no_figures": ("<p>text only</p>", "figures"),
    }


def self_test_broken_browsers(workdir):
    """A browser that never answers and one that exits at once must both end in a CheckError, in seconds."""
    failed = 0
    for name, script in [("hung_browser", "exec sleep 600"), ("dead_browser", "exit 3")]:
        fake = Path(workdir) / name
        fake.write_text(f"#!/bin/sh\n{script}\n")
        fake.chmod(0o755)
        started = time.monotonic()
        try:
            Chromium(str(fake), timeout=2).close()
            outcome, ok = "no error", False
        except CheckError as e:
            outcome, ok = f"error: {e}", time.monotonic() - started < 20
        print(f"self-test {name}: expected an error within 20 s, got {outcome} after "
              f"{time.monotonic() - started:.1f} s -> {'ok' if ok else 'WRONG'}")
        failed += not ok
    return failed


def self_test(browser, workdir):
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name, (body, expected) in self_test_pages().items():
        page = workdir / f"{name}.html"
        page.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{name}</title>"
                        f"<style>{CSS}</style></head><body>{body}</body></html>\n", encoding="utf-8")
        shot = workdir / f"{name}.png" if expected is None else None
        problems, facts = check_page(browser, page, shot)
        kinds = sorted({k for k, _ in problems})
        if expected is None:
            ok = not problems and facts.get("screenshot", (None, None))[1] is not None
        else:
            ok = expected in kinds
        print(f"self-test {name}: expected {expected or 'no problem'}, found {', '.join(kinds) or 'none'}"
              f" -> {'ok' if ok else 'WRONG'}")
        for _, text in problems:
            print(f"    {text}")
        failed += not ok
    return failed


# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description="Check HTML pages in headless Chromium (see the module docstring).")
    ap.add_argument("pages", nargs="*", help="HTML files to check")
    ap.add_argument("--screenshot-dir", help="save a full-page PNG of every page here (default: next to the page)")
    ap.add_argument("--min-figures", type=int, default=1, help="fewest <svg>/<img>/<canvas> a page may have")
    ap.add_argument("--timeout", type=float, default=60, help="seconds any one browser step may take (default 60)")
    ap.add_argument("--self-test", action="store_true", help="check pages with planted faults (see above)")
    ap.add_argument("--workdir", help="--self-test: folder for its pages and screenshot")
    args = ap.parse_args(argv)
    if not args.pages and not args.self_test:
        ap.error("give pages to check, or --self-test")
    if args.self_test and not args.workdir:
        ap.error("--self-test needs --workdir")
    for page in args.pages:
        if not Path(page).is_file():
            print(f"check_report_html.py: error: {page}: no such file", file=sys.stderr)
            return 1
    started = time.monotonic()
    browser = None
    try:
        browser = Chromium(find_browser(), args.timeout)
        failed = 0
        if args.self_test:
            failed += self_test(browser, args.workdir) + self_test_broken_browsers(args.workdir)
        for page in args.pages:
            page = Path(page)
            shot = Path(args.screenshot_dir or page.parent) / (page.stem + ".png")
            problems, facts = check_page(browser, page, shot, args.min_figures)
            graphics = facts.get("graphics", [])
            print(f"{page}: {len(graphics)} figures, smallest "
                  + (f"{min(g['width'] for g in graphics):.0f} x {min(g['height'] for g in graphics):.0f} px"
                     if graphics else "-")
                  + f", {len(problems)} problem(s)")
            if "screenshot" in facts:
                path, size = facts["screenshot"]
                print(f"screenshot: {Path(path).resolve()}" + (f" ({size[0]} x {size[1]} px)" if size else ""))
            for _, text in problems:
                print(f"    {text}")
            failed += bool(problems)
    except CheckError as e:
        print(f"check_report_html.py: error: {e}", file=sys.stderr)
        return 1
    finally:
        if browser:
            browser.close()
    print(f"check_report_html.py: {'ok' if not failed else f'{failed} FAILED'} "
          f"({time.monotonic() - started:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
