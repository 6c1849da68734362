#!/usr/bin/env python3
"""Headless-Chromium driver for mapserve's directory-listing tests.

The Rust integration tests start the real mapserve binary on a directory they
fill (among others with a file literally named `<img src=x onerror=alert(1)>.txt`
and one with a non-ASCII name), then run

    python3 tests/integration/browser.py --base http://127.0.0.1:PORT --out DIR \
        [--downloads DIR] [--filter-text ab] [--download-name 'résumé 2026 ✓.txt']

and parse the ONE JSON object this script prints on stdout.  The script only
observes: it reports what a real browser saw, and the Rust test decides
whether that is right.  It exits non-zero (with a message on stderr and no
JSON) only when the browser cannot be driven at all: chromedriver missing or
not starting, or no session.  A failure inside one step is recorded as
`{"error": "..."}` for that step and the other steps still run.

Nothing outside the Python 3 standard library is used: chromedriver is
started here (`chromedriver --port=<free port>`, killed at exit whatever
happens) and spoken to over plain W3C WebDriver HTTP with urllib, plus
chromedriver's `POST /session/{id}/goog/cdp/execute` for the few DevTools
commands WebDriver has no word for (download directory, media emulation,
a script run before every page's own scripts).  Chromium runs headless
(`--headless=new`) with `--no-sandbox`, as CI runs as root.

Steps, and the keys of the JSON object:

  setup        browser version, window size, how downloads were allowed
  listing      GET {base}/: `title`, `rows` (text of `td.name span` of every
               visible `#listing tbody tr` that is not `.parent`, in order),
               `screenshot` {path, bytes} of {out}/listing-light.png,
               `filter_visible` (is `#filter` displayed)
  sort_by_size click `th.size a`: `url`, `rows`; click it again:
               `url_second_click`, `rows_second_click`
  filter       type --filter-text into `#filter` with real key events:
               `visible_rows`, `status_text` (`#filter-status`)
  dark         prefers-color-scheme emulated dark, then light:
               `background`, `background_light` (body's computed
               background-color), {out}/listing-dark.png
  xss          `dialogs` (calls of alert/confirm/prompt caught by a hook
               installed before any page script), `alert_opened` (a real
               dialog was open anyway), `img_in_table`, `xss_row_text`
  download     click the `td.dl a` of the row named --download-name:
               `saved_name`, `sha256`, `bytes` of the file Chromium saved
  not_found    {base}/no/such/file.txt: `title`, `h1_text`, `status_text`,
               `has_link_to_root`, `http_status`, {out}/not-found.png

Steps run only with --steps (the encoding tests):

  encoded_script  {base}/enc/page.html, whose script enc/app.js sets
               window.__ran: `ran`, `encoded_body_size`, `decoded_body_size`
  cors         from {base}/enc/page.html, fetch --cors-ok/media.bin and
               --cors-off/media.bin with `Range: bytes=0-99` and (preflighted)
               `Range: bytes=0-9, 20-29`: `with_cors`, `without_cors`, each
               {single, multi} as {status, bytes, content_range, content_type,
               etag} or {error}

Every step also has `ms` (its duration).  `failed_steps` lists the steps that
recorded an error; `console_errors` holds the browser console's SEVERE lines;
`alerts` every real dialog met in any step ({text, during}; none while the
hook is in place, which is from the first page load on).
"""

import argparse
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

# The W3C WebDriver web-element identifier (spec, section "Elements").
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"
HTTP_TIMEOUT = 30  # seconds, any single WebDriver call

# Run in every new document before the page's own scripts (CDP
# Page.addScriptToEvaluateOnNewDocument): dialogs are recorded, not shown.
DIALOG_HOOK = r"""
(function () {
  if (window.__dialogs) return;
  var seen = [];
  Object.defineProperty(window, '__dialogs', { value: seen, writable: false });
  ['alert', 'confirm', 'prompt'].forEach(function (name) {
    window[name] = function () {
      seen.push({ fn: name, args: Array.prototype.map.call(arguments, String) });
      return name === 'confirm' ? false : (name === 'prompt' ? null : undefined);
    };
  });
})();
"""

# Text of `td.name span` for each shown, non-parent row of #listing.
ROWS_JS = r"""
var out = [];
document.querySelectorAll('table#listing tbody tr').forEach(function (tr) {
  if (tr.classList.contains('parent') || tr.hidden) return;
  if (getComputedStyle(tr).display === 'none' || tr.getClientRects().length === 0) return;
  var span = tr.querySelector('td.name span');
  out.push(span ? span.textContent : null);
});
return out;
"""


class WebDriverError(Exception):
    def __init__(self, error, message, method="", path=""):
        self.error = error
        self.message = message
        first = " / ".join((message or "").strip().splitlines()[0:2])
        if not first.startswith(error):  # chromedriver's messages usually repeat it
            first = f"{error}: {first}"
        super().__init__(f"{first} ({method} {path})")


class Driver:
    """A chromedriver process, one session in it, and the calls the scenario needs."""

    def __init__(self, chromedriver, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sid = None
        self.alerts = []  # real dialogs met by any command: {"text", "during"}
        self.step = "setup"
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [chromedriver, f"--port={self.port}", "--allowed-ips=127.0.0.1", f"--log-path={log_path}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: Chromium is killed with it
        )
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromedriver exited with {self.proc.returncode} at start; log: {tail(log_path)}")
            try:
                st = self.raw("GET", "/status", None, timeout=2)
                if st.get("ready"):
                    break
            except (OSError, WebDriverError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"chromedriver on port {self.port} not ready after 20 s; log: {tail(log_path)}")
            time.sleep(0.1)

    # --- transport -------------------------------------------------------

    def raw(self, method, path, body, timeout=HTTP_TIMEOUT):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json; charset=utf-8")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as e:
            payload = e.read()
            try:
                value = json.loads(payload).get("value") or {}
            except ValueError:
                raise WebDriverError("http " + str(e.code), payload[:300].decode("utf-8", "replace"), method, path)
            raise WebDriverError(value.get("error", f"http {e.code}"), value.get("message", ""), method, path)
        value = json.loads(payload).get("value") if payload else None
        if isinstance(value, dict) and "error" in value and "message" in value:
            raise WebDriverError(value["error"], value["message"], method, path)
        return value

    def wd(self, method, path, body=None, navigation=False):
        """A session command; `path` is relative to /session/{id}.

        A real dialog (the page's own alert(), which the hook should have
        caught) is recorded and dismissed; the command is then retried,
        unless it was a navigation, which has already happened."""
        full = f"/session/{self.sid}{path}"
        for _ in range(4):
            try:
                return self.raw(method, full, body)
            except WebDriverError as e:
                if e.error != "unexpected alert open":
                    raise
                self.dismiss_alert(e.message)
                if navigation:
                    return None
        return self.raw(method, full, body)

    def check_alert(self):
        """Records and dismisses a dialog that is open now, if any."""
        try:
            text = self.raw("GET", f"/session/{self.sid}/alert/text", None)
        except WebDriverError as e:
            if e.error == "no such alert":
                return
            raise
        self.alerts.append({"text": text, "during": self.step})
        try:
            self.raw("POST", f"/session/{self.sid}/alert/dismiss", {})
        except WebDriverError:
            pass

    def dismiss_alert(self, message):
        text = None
        try:
            text = self.raw("GET", f"/session/{self.sid}/alert/text", None)
        except WebDriverError:
            pass  # already dismissed by the prompt handler
        if text is None and "Alert text : " in (message or ""):
            text = message.split("Alert text : ", 1)[1].split("}", 1)[0]
        self.alerts.append({"text": text, "during": self.step})
        try:
            self.raw("POST", f"/session/{self.sid}/alert/dismiss", {})
        except WebDriverError:
            pass

    # --- session ---------------------------------------------------------

    def start_session(self, chrome_binary, profile_dir, downloads):
        opts = {
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,900",
                "--remote-debugging-pipe",  # no DevTools port to race for
                f"--user-data-dir={profile_dir}",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-sync",
                "--disable-component-update",
                "--password-store=basic",
                "--force-color-profile=srgb",
                "--hide-scrollbars",
                "--lang=en-US",
            ],
            "prefs": {
                "download.default_directory": downloads,
                "download.prompt_for_download": False,
                "download.directory_upgrade": True,
                "safebrowsing.enabled": False,
                "safebrowsing.disable_download_protection": True,
                "profile.default_content_setting_values.automatic_downloads": 1,
            },
        }
        if chrome_binary:
            opts["binary"] = chrome_binary
        caps = {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "unhandledPromptBehavior": "ignore",
            "timeouts": {"implicit": 0, "pageLoad": 20000, "script": 10000},
            "goog:chromeOptions": opts,
            "goog:loggingPrefs": {"browser": "ALL"},
        }
        value = self.raw("POST", "/session", {"capabilities": {"alwaysMatch": caps}}, timeout=60)
        self.sid = value["sessionId"]
        return value.get("capabilities", {})

    def quit(self):
        if self.sid:
            try:
                self.raw("DELETE", f"/session/{self.sid}", None, timeout=10)
            except Exception:
                pass
            self.sid = None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)

    # --- helpers the scenario uses --------------------------------------

    def navigate(self, url):
        # A dialog left open by the previous page would make chromedriver
        # refuse the navigation; one met now is the new page's own.
        self.check_alert()
        self.wd("POST", "/url", {"url": url}, navigation=True)

    def current_url(self):
        return self.wd("GET", "/url")

    def title(self):
        return self.wd("GET", "/title")

    def find(self, css, within=None):
        base = f"/element/{within}" if within else ""
        return el_id(self.wd("POST", f"{base}/element", {"using": "css selector", "value": css}))

    def find_all(self, css, within=None):
        base = f"/element/{within}" if within else ""
        found = self.wd("POST", f"{base}/elements", {"using": "css selector", "value": css})
        return [el_id(e) for e in found]

    def click(self, el):
        self.wd("POST", f"/element/{el}/click", {})

    def send_keys(self, el, text):
        self.wd("POST", f"/element/{el}/value", {"text": text})

    def text(self, el):
        return self.wd("GET", f"/element/{el}/text")

    def displayed(self, el):
        return bool(self.wd("GET", f"/element/{el}/displayed"))

    def execute(self, script, args=()):
        """W3C execute/sync; element ids in `args` must be passed as elem(id)."""
        return self.wd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def execute_async(self, script, args=()):
        """W3C execute/async: the script calls arguments[arguments.length-1]."""
        return self.wd("POST", "/execute/async", {"script": script, "args": list(args)})

    def cdp(self, cmd, params=None):
        return self.wd("POST", "/goog/cdp/execute", {"cmd": cmd, "params": params or {}})

    def screenshot(self, path):
        png = base64.b64decode(self.wd("GET", "/screenshot"))
        with open(path, "wb") as f:
            f.write(png)
        return {"path": path, "bytes": len(png), "png": png[:8] == b"\x89PNG\r\n\x1a\n"}

    def console_errors(self):
        try:
            entries = self.wd("POST", "/se/log", {"type": "browser"}) or []
        except WebDriverError:
            return None
        return [e.get("message") for e in entries if e.get("level") == "SEVERE"]

    # --- waiting ---------------------------------------------------------

    def wait_until(self, fn, timeout=10, what="condition", interval=0.1):
        """Calls fn until it returns something truthy; WebDriver errors while
        waiting (stale or missing elements during a navigation) are retried."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                v = fn()
                if v:
                    return v
            except WebDriverError as e:
                if e.error in ("invalid session id", "session not created"):
                    raise
                last = e
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout} s waiting for {what}" + (f" (last: {last})" if last else ""))
            time.sleep(interval)

    def wait_loaded(self, css="table#listing", timeout=5):
        self.wait_until(lambda: self.execute("return document.readyState") == "complete", timeout, "document load")
        return self.wait_until(lambda: self.find(css), timeout, css)


def elem(el_id):
    """An element id as a script argument."""
    return {ELEMENT_KEY: el_id}


def el_id(value):
    """The id in a web-element reference (None for a non-element)."""
    if not isinstance(value, dict):
        return None
    if ELEMENT_KEY in value:
        return value[ELEMENT_KEY]
    return value.get("ELEMENT")  # pre-W3C chromedriver


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=1500):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"


def find_chrome(explicit):
    if explicit:
        return explicit
    if os.environ.get("CHROME_BIN"):
        return os.environ["CHROME_BIN"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        p = shutil.which(name)
        if p:
            return p
    return None  # let chromedriver look


# --- the scenario ------------------------------------------------------------


def step_listing(d, a):
    d.navigate(a.base + "/")
    d.wait_loaded()
    r = {"title": d.title(), "rows": d.execute(ROWS_JS)}
    try:
        f = d.wait_until(lambda: d.find("#filter"), 2, "#filter")
        # the page's script unhides it; give that a moment
        r["filter_visible"] = bool(d.wait_until(lambda: d.displayed(f), 2, "#filter shown")) if f else False
    except TimeoutError:
        r["filter_visible"] = False
    r["screenshot"] = d.screenshot(os.path.join(a.out, "listing-light.png"))
    return r


def step_sort_by_size(d, a):
    d.navigate(a.base + "/")
    d.wait_loaded()
    d.click(d.find("th.size a"))
    url = d.wait_until(lambda: (lambda u: u if "sort=size" in u else None)(d.current_url()), 10, "URL with sort=size")
    d.wait_loaded()
    r = {"url": url, "rows": d.execute(ROWS_JS)}
    d.click(d.find("th.size a"))
    url2 = d.wait_until(lambda: (lambda u: u if u != url else None)(d.current_url()), 10, "URL after second click")
    d.wait_loaded()
    r["url_second_click"] = url2
    r["rows_second_click"] = d.execute(ROWS_JS)
    return r


def step_filter(d, a):
    d.navigate(a.base + "/")
    d.wait_loaded()
    f = d.find("#filter")
    d.wait_until(lambda: d.displayed(f), 3, "#filter displayed")
    d.click(f)
    d.send_keys(f, a.filter_text)
    time.sleep(0.3)
    r = {
        "typed": a.filter_text,
        "value": d.execute("return arguments[0].value", [elem(f)]),
        "visible_rows": d.execute(ROWS_JS),
    }
    st = d.find_all("#filter-status")
    r["status_text"] = d.text(st[0]) if st else None
    return r


FOCUS_JS = r"""
    var e = document.activeElement;
    if (!e || e === document.body) return null;
    var s = getComputedStyle(e);
    var label = e.id ? '#' + e.id : (e.getAttribute('href') !== null ? 'a[href=' + e.getAttribute('href') + ']' : e.tagName.toLowerCase());
    var cell = e.closest('td, th, nav, header');
    return {label: label, cell: cell ? (cell.className || cell.tagName.toLowerCase()) : null,
            outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0 || s.boxShadow !== 'none'};
"""


def step_keyboard(d, a):
    """Tab through the page with real key events: what takes focus, in what
    order, and whether the focused element is visibly marked."""
    d.navigate(a.base + "/")
    d.wait_loaded()
    order = []
    for _ in range(a.tabs):
        d.wd("POST", "/actions", {"actions": [{"type": "key", "id": "kb", "actions": [
            {"type": "keyDown", "value": "\uE004"}, {"type": "keyUp", "value": "\uE004"}]}]})
        order.append(d.execute(FOCUS_JS))
    d.wd("DELETE", "/actions")
    # `/` focuses the filter from anywhere.
    d.execute("document.activeElement && document.activeElement.blur()")
    d.wd("POST", "/actions", {"actions": [{"type": "key", "id": "kb", "actions": [
        {"type": "keyDown", "value": "/"}, {"type": "keyUp", "value": "/"}]}]})
    slash = d.execute("return document.activeElement && document.activeElement.id")
    return {"order": order, "slash_focuses": slash}


def step_phone(d, a):
    """A phone-sized window: nothing wider than the screen, a picture."""
    rect = d.wd("GET", "/window/rect")
    try:
        d.wd("POST", "/window/rect", {"width": 390, "height": 844})
        d.navigate(a.base + "/")
        d.wait_loaded()
        r = d.execute("return {inner: innerWidth, scroll: document.documentElement.scrollWidth,"
                      " table: document.getElementById('listing').getBoundingClientRect().width}")
        r["screenshot"] = d.screenshot(os.path.join(a.out, "listing-phone.png"))
        return r
    finally:
        d.wd("POST", "/window/rect", {"width": rect["width"], "height": rect["height"]})


def body_background(d):
    return d.execute("return getComputedStyle(document.body).backgroundColor")


def step_dark(d, a):
    r = {}
    try:
        d.cdp("Emulation.setEmulatedMedia", {"media": "", "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        d.navigate(a.base + "/")
        d.wait_loaded()
        r["media_dark_matches"] = d.execute("return matchMedia('(prefers-color-scheme: dark)').matches")
        r["background"] = body_background(d)
        r["screenshot"] = d.screenshot(os.path.join(a.out, "listing-dark.png"))
        d.cdp("Emulation.setEmulatedMedia", {"media": "", "features": [{"name": "prefers-color-scheme", "value": "light"}]})
        d.navigate(a.base + "/")
        d.wait_loaded()
        r["media_dark_matches_after_light"] = d.execute("return matchMedia('(prefers-color-scheme: dark)').matches")
        r["background_light"] = body_background(d)
    finally:
        try:
            d.cdp("Emulation.setEmulatedMedia", {"media": "", "features": [{"name": "prefers-color-scheme", "value": "light"}]})
        except WebDriverError:
            pass
    return r


def step_xss(d, a):
    before = len(d.alerts)
    d.navigate(a.base + "/")
    d.wait_loaded()
    # an <img src=x> that slipped in fails to load asynchronously; wait for
    # every image in the document to settle, then a little more
    d.wait_until(lambda: d.execute("return Array.prototype.every.call(document.images, function (i) { return i.complete; })"),
                 5, "images settled")
    time.sleep(0.3)
    r = {
        "hook_installed": d.execute("return Array.isArray(window.__dialogs)"),
        "dialogs": d.execute("return window.__dialogs || []"),
        "img_in_table": d.execute("var t = document.querySelector('#listing'); return t ? t.querySelectorAll('img').length : null"),
        "img_in_document": d.execute("return document.images.length"),
        "xss_row_text": d.execute(
            "var s = Array.prototype.filter.call(document.querySelectorAll('#listing td.name span'),"
            " function (e) { return e.textContent.indexOf('onerror') >= 0; });"
            " return s.length ? s[0].textContent : null"),
    }
    new_alerts = d.alerts[before:]
    r["alert_opened"] = bool(new_alerts)
    r["alerts"] = new_alerts
    return r


def wait_download(d, folder, before):
    """Names of the files that appeared in `folder` (not in `before`), once
    no download into it is still in progress; up to 20 s."""
    def finished():
        new = [n for n in os.listdir(folder) if n not in before]
        if not new or any(n.endswith(".crdownload") or n.startswith(".com.google.Chrome") for n in new):
            return None
        return sorted(n for n in new if os.path.isfile(os.path.join(folder, n))) or None
    return d.wait_until(finished, 20, f"a finished download in {folder}", interval=0.2)


def saved(folder, name):
    """What a saved file is: its name, sha256 and length."""
    with open(os.path.join(folder, name), "rb") as f:
        data = f.read()
    return {"saved_name": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def step_download(d, a):
    os.makedirs(a.downloads, exist_ok=True)
    before = set(os.listdir(a.downloads))
    d.navigate(a.base + "/")
    d.wait_loaded()
    link = d.execute(
        "var rows = document.querySelectorAll('#listing tbody tr');"
        " for (var i = 0; i < rows.length; i++) {"
        "   var s = rows[i].querySelector('td.name span');"
        "   if (s && s.textContent === arguments[0]) return rows[i].querySelector('td.dl a'); }"
        " return null;", [a.download_name])
    el = el_id(link)
    if not el:
        raise LookupError(f"no row whose td.name span is {a.download_name!r} (or it has no td.dl a)")
    r = {"href": d.execute("return arguments[0].getAttribute('href')", [elem(el)])}
    d.click(el)

    names = wait_download(d, a.downloads, before)
    r.update(saved(a.downloads, names[0]))
    if len(names) > 1:
        r["other_new_files"] = names[1:]
    return r


def step_download_query(d, a):
    """A shared `?download` link (no `download` attribute): the name must come
    from Content-Disposition's filename*.  Saved into a fresh directory."""
    target = os.path.join(a.downloads, "query")
    os.makedirs(target, exist_ok=True)
    d.cdp("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": target, "eventsEnabled": False})
    d.navigate(a.base + "/")
    d.wait_loaded()
    href = d.execute(
        "var rows = document.querySelectorAll('#listing tbody tr');"
        " for (var i = 0; i < rows.length; i++) {"
        "   var s = rows[i].querySelector('td.name span');"
        "   if (s && s.textContent === arguments[0]) return rows[i].querySelector('td.name a').href; }"
        " return null;", [a.download_name])
    if not href:
        raise LookupError(f"no row whose td.name span is {a.download_name!r}")
    url = href + "?download"
    # Navigating to an attachment starts a download and leaves the page as it is.
    d.execute("location.href = arguments[0]", [url])

    names = wait_download(d, target, set())
    return {"url": url, **saved(target, names[0])}


def step_not_found(d, a):
    d.navigate(a.base + "/no/such/file.txt")
    d.wait_until(lambda: d.execute("return document.readyState") == "complete", 10, "document load")
    r = d.execute(r"""
        function t(sel) { var e = document.querySelector(sel); return e ? e.textContent.trim() : null; }
        var nav = performance.getEntriesByType('navigation')[0];
        return {
          title: document.title,
          h1_text: t('h1'),
          status_text: t('.status'),
          has_link_to_root: document.querySelector('a[href="/"]') !== null,
          http_status: nav && nav.responseStatus ? nav.responseStatus : null,
          url: location.href
        };""")
    r["screenshot"] = d.screenshot(os.path.join(a.out, "not-found.png"))
    return r


def step_encoded_script(d, a):
    """{base}/enc/page.html loads enc/app.js, which the server sends
    compressed; the script sets window.__ran."""
    d.navigate(a.base + "/enc/page.html")
    d.wait_until(lambda: d.execute("return document.readyState") == "complete", 10, "document load")
    return d.execute(r"""
        var e = performance.getEntriesByType('resource').filter(function (r) { return /app\.js$/.test(r.name); })[0];
        return {
          ran: window.__ran === undefined ? null : window.__ran,
          title: document.title,
          encoded_body_size: e ? e.encodedBodySize : null,
          decoded_body_size: e ? e.decodedBodySize : null
        };""")


CORS_FETCH = r"""
var done = arguments[arguments.length - 1];
function one(url, range) {
  return fetch(url, {headers: {'Range': range}}).then(function (r) {
    return r.arrayBuffer().then(function (b) {
      return {status: r.status, bytes: b.byteLength,
              content_range: r.headers.get('Content-Range'),
              content_type: r.headers.get('Content-Type'),
              etag: r.headers.get('ETag')};
    });
  }, function (e) { return {error: String(e)}; });
}
Promise.all([one(arguments[0], 'bytes=0-99'), one(arguments[0], 'bytes=0-9, 20-29')])
  .then(function (rs) { done({single: rs[0], multi: rs[1], origin: location.origin}); });
"""


def step_cors(d, a):
    """From a page of {base}, cross-origin fetches with Range of
    {cors_ok}/media.bin (a server with --cors) and {cors_off}/media.bin
    (one without): a single range (a CORS-safelisted header) and two ranges
    (which needs a preflight)."""
    if not a.cors_ok or not a.cors_off:
        raise ValueError("--cors-ok and --cors-off are needed")
    d.navigate(a.base + "/enc/page.html")
    d.wait_until(lambda: d.execute("return document.readyState") == "complete", 10, "document load")
    return {
        "with_cors": d.execute_async(CORS_FETCH, [a.cors_ok.rstrip("/") + "/media.bin"]),
        "without_cors": d.execute_async(CORS_FETCH, [a.cors_off.rstrip("/") + "/media.bin"]),
    }


ALL_STEPS = [
    ("listing", step_listing),
    ("sort_by_size", step_sort_by_size),
    ("filter", step_filter),
    ("dark", step_dark),
    ("keyboard", step_keyboard),
    ("phone", step_phone),
    ("xss", step_xss),
    ("download", step_download),
    ("download_query", step_download_query),
    ("not_found", step_not_found),
    ("encoded_script", step_encoded_script),
    ("cors", step_cors),
]
STEPS = ALL_STEPS


def setup(d, a, profile):
    caps = d.start_session(find_chrome(a.chrome), profile, a.downloads)
    r = {"browser_version": caps.get("browserVersion"), "chromedriver_port": d.port}
    # Headless Chromium ignores the download prefs unless told over CDP.
    r["download_behavior"] = None
    for cmd, params in (
        ("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": a.downloads, "eventsEnabled": False}),
        ("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": a.downloads}),
    ):
        try:
            d.cdp(cmd, params)
            r["download_behavior"] = cmd
            break
        except WebDriverError as e:
            r.setdefault("download_behavior_errors", []).append(str(e))
    if not a.no_dialog_hook:
        d.cdp("Page.addScriptToEvaluateOnNewDocument", {"source": DIALOG_HOOK})
    r["dialog_hook"] = not a.no_dialog_hook
    r["viewport"] = d.execute("return [innerWidth, innerHeight]")
    return r


def run(a):
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(a.downloads, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="chrome-profile-", dir=a.out)
    started = time.monotonic()
    result = {"base": a.base}
    d = None
    try:
        d = Driver(a.chromedriver, os.path.join(a.out, "chromedriver.log"))
        try:
            result["setup"] = setup(d, a, profile)
        except WebDriverError as e:
            raise RuntimeError(f"cannot start a Chromium session: {e}; chromedriver log: {tail(d.log_path)}")
        for name, fn in STEPS:
            if a.steps and name not in a.steps:
                continue
            d.step = name
            t0 = time.monotonic()
            try:
                r = fn(d, a)
            except Exception as e:  # one step's failure must not hide the others
                r = {"error": f"{type(e).__name__}: {e}"}
                try:
                    r["url"] = d.current_url()
                except Exception:
                    pass
            try:
                d.check_alert()  # charge a late dialog to the step that opened it
            except Exception:
                pass
            r["ms"] = round((time.monotonic() - t0) * 1000)
            result[name] = r
        d.step = "end"
        result["console_errors"] = d.console_errors()
        result["alerts"] = d.alerts
    finally:
        if d is not None:
            d.quit()
        shutil.rmtree(profile, ignore_errors=True)
    result["failed_steps"] = [n for n, _ in STEPS if "error" in (result.get(n) or {})]
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="http://127.0.0.1:PORT of the mapserve under test")
    ap.add_argument("--out", required=True, help="directory for screenshots, logs, the browser profile")
    ap.add_argument("--downloads", help="where Chromium saves downloads (default: OUT/downloads)")
    ap.add_argument("--filter-text", default="ab")
    ap.add_argument("--tabs", type=int, default=8, help="Tab presses the keyboard step records")
    ap.add_argument("--download-name", default="r\u00e9sum\u00e9 2026 \u2713.txt")
    ap.add_argument("--chromedriver", default=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    ap.add_argument("--chrome", help="browser binary (default: $CHROME_BIN or chromium on PATH)")
    ap.add_argument("--max-seconds", type=int, default=120, help="give up (cleanly) after this long")
    ap.add_argument("--no-dialog-hook", action="store_true",
                    help="do not neutralise alert(): to check that a real dialog is reported too")
    ap.add_argument("--steps", help="comma-separated steps to run (default: the listing steps)")
    ap.add_argument("--cors-ok", help="base URL of a mapserve with --cors (the cors step)")
    ap.add_argument("--cors-off", help="base URL of a mapserve without --cors (the cors step)")
    a = ap.parse_args()
    default = [n for n, _ in STEPS if n not in ("encoded_script", "cors")]
    a.steps = [s.strip() for s in a.steps.split(",")] if a.steps else default
    a.base = a.base.rstrip("/")
    a.out = os.path.abspath(a.out)
    a.downloads = os.path.abspath(a.downloads or os.path.join(a.out, "downloads"))

    drive("browser.py", run, a)


def drive(name, run, a):
    """Runs `run(a)` as a driver script does: stopped cleanly by a signal or
    after `a.max_seconds`, a missing chromedriver or a browser failure as a
    message and a non-zero exit, the result as ONE JSON object on stdout."""
    def stop(signum, _frame):
        raise SystemExit(f"{name}: stopped by signal {signum}")

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, stop)

    def overtime(_signum, _frame):
        raise SystemExit(f"{name}: gave up after {a.max_seconds} s")

    signal.signal(signal.SIGALRM, overtime)
    signal.alarm(a.max_seconds)

    if not os.path.exists(a.chromedriver) and not shutil.which(a.chromedriver):
        sys.exit(f"{name}: chromedriver not found ({a.chromedriver}); install chromium-driver")
    try:
        result = run(a)
    except (RuntimeError, WebDriverError, OSError) as e:
        sys.exit(f"{name}: {e}")
    signal.alarm(0)
    if result["failed_steps"]:
        print(f"{name}: steps with errors: {', '.join(result['failed_steps'])}", file=sys.stderr)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
