#!/usr/bin/env python3
"""Headless-Chromium driver for mapserve's admin dashboard (static/dashboard.html).

The Rust integration tests (tests/integration/dashboard.rs) and
scripts/dashboard-shot start the real mapserve binary with an admin listener,
then run

    python3 tests/integration/dashboard.py --admin http://127.0.0.1:PORT --out DIR \
        --steps actions --prewarm /a.bin --evict /b.bin
    python3 tests/integration/dashboard.py --admin ... --out DIR --steps auth --token TOKEN
    python3 tests/integration/dashboard.py --admin ... --out DIR --steps shot --screenshot FILE

and parse the ONE JSON object printed on stdout.  Like browser.py (whose
Driver this script reuses: chromedriver started here on a free port, W3C
WebDriver over urllib, Chromium `--headless=new --no-sandbox`, 1280x900),
it only observes and reports; the caller decides whether that is right.  It
exits non-zero with a message on stderr only when the browser cannot be
driven at all; a failing step is recorded as {"error": ...} and the others
still run.

Before any page script, a hook (CDP Page.addScriptToEvaluateOnNewDocument)
records into `window.__seen`: every text `#status` takes (`status`: {text,
cls}), Content-Security-Policy violations (`csp`: {uri, directive}),
uncaught errors and rejections (`errors`), and replaces alert/confirm/prompt.

Steps, run in this order (those named by --steps), and the keys of the
JSON object:

  setup     browser version, viewport
  auth      (--token) GET {admin}/ of a listener that wants a token:
            `auth_shown` (is `#auth` displayed), `main_hidden_before`,
            `auth_msg`, `updated`, then type --token into `#token` with key
            events and click the form's submit button: `auth_hidden_after`,
            `main_shown_after`, `rows` (paths, once shown), `gtext`,
            {out}/dashboard-auth.png
  load      GET {admin}/: `title`, `rows` (every `#entries tr[data-path]`:
            {path, kind, cells, res, part, out, pinned, actions, pages})
            once the table has rows, `gauge` (innerText of `#gauge`),
            `gtext` (`#gtext`), {out}/dashboard-before.png
  prewarm   click `button[data-action=prewarm]` of the row whose data-path
            is --prewarm, then wait (up to 20 s) until every cell of its
            `.strip` has class `res`: `before`, `after` (that row, as in
            `rows`), `waited_ms`, `status` (the `#status` texts seen since
            the click), {out}/dashboard-prewarmed.png
  evict     click `button[data-action=evict]` of the row --evict, wait (up to
            20 s) until no `tr[data-path]` is that path: `before`, `gone`,
            `waited_ms`, `status`, `rows_after` (paths left)
  shot      (--screenshot) GET {admin}/, wait until `#interval` says
            "over N s" (two samples, so rates show) and the table has rows,
            then --settle seconds more: `rows`, `rates`, `gtext`,
            `screenshot` {path, bytes}
  checks    `gauge`, `gtext`, `rates` (innerText of `#rates`), `interval`,
            `status_final` ({text, cls} of `#status`), `origin` (the page's),
            `resources` (URLs of every resource the page loaded, from the
            Resource Timing buffer), `foreign` (those of another origin),
            `csp` (violations), `page_errors` (uncaught errors),
            `dialogs`

Every step also has `ms`.  `failed_steps` lists steps with an error;
`console_errors` the browser console's SEVERE lines; `seen` the hook's
record (status texts, csp, errors).
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser import DIALOG_HOOK, Driver, WebDriverError, drive, el_id, find_chrome, tail  # noqa: E402

SEEN_HOOK = r"""
(function () {
  if (window.__seen) return;
  var seen = { status: [], csp: [], errors: [] };
  Object.defineProperty(window, '__seen', { value: seen, writable: false });
  document.addEventListener('securitypolicyviolation', function (e) {
    seen.csp.push({ uri: String(e.blockedURI), directive: String(e.violatedDirective) });
  });
  window.addEventListener('error', function (e) { seen.errors.push(String(e.message)); });
  window.addEventListener('unhandledrejection', function (e) { seen.errors.push('unhandled rejection: ' + String(e.reason)); });
  var last = null;
  new MutationObserver(function () {
    var s = document.getElementById('status');
    if (!s) return;
    var t = s.textContent, c = s.className;
    if (last === null || t !== last.text || c !== last.cls) {
      last = { text: t, cls: c };
      seen.status.push(last);
    }
  }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['class'] });
})();
"""

# Every row of #entries as the user sees it.
ROWS_JS = r"""
function rowInfo(tr) {
  var cells = Array.prototype.map.call(tr.querySelectorAll('.strip span.cell'), function (c) {
    return c.classList.contains('res') ? 'res' : c.classList.contains('part') ? 'part' : c.classList.contains('out') ? 'out' : c.className;
  });
  var badge = tr.querySelector('.badge.pinned');
  return {
    path: tr.dataset.path, kind: tr.dataset.kind, cells: cells,
    res: cells.filter(function (c) { return c === 'res'; }).length,
    part: cells.filter(function (c) { return c === 'part'; }).length,
    out: cells.filter(function (c) { return c === 'out'; }).length,
    pinned: !!badge && !badge.hidden,
    actions: Array.prototype.map.call(tr.querySelectorAll('button[data-action]'), function (b) { return b.dataset.action; }),
    pages: (tr.querySelector('.pages') || {}).textContent || null
  };
}
var want = arguments[0];
var trs = Array.prototype.slice.call(document.querySelectorAll('#entries tbody tr[data-path]'));
if (want != null) {
  var tr = trs.filter(function (t) { return t.dataset.path === want; })[0];
  return tr ? rowInfo(tr) : null;
}
return trs.map(rowInfo);
"""

BUTTON_JS = r"""
var trs = document.querySelectorAll('#entries tbody tr[data-path]');
for (var i = 0; i < trs.length; i++)
  if (trs[i].dataset.path === arguments[0]) return trs[i].querySelector('button[data-action="' + arguments[1] + '"]');
return null;
"""


def text_of(d, sel):
    return d.execute("var e = document.querySelector(arguments[0]); return e ? e.innerText : null", [sel])


def rows(d, path=None):
    return d.execute(ROWS_JS, [path])


def seen(d):
    return d.execute("return window.__seen ? JSON.parse(JSON.stringify(window.__seen)) : null")


def status_since(d, n):
    s = seen(d)
    return (s or {}).get("status", [])[n:]


def open_dashboard(d, a, need_rows=True):
    d.navigate(a.admin + "/")
    d.wait_until(lambda: d.execute("return document.readyState") == "complete", 10, "document load")
    if need_rows:
        d.wait_until(lambda: rows(d), 15, "rows in #entries")


def no_error_status(d, n, what):
    """Fails the step at once when `#status` reported an error since the
    `n`th text, rather than waiting for what will not come."""
    bad = [s["text"] for s in status_since(d, n) if s["cls"] == "err"]
    if bad:
        raise RuntimeError(f"#status reported an error while waiting for {what}: {bad[-1]!r}")


def click_action(d, path, action):
    b = el_id(d.execute(BUTTON_JS, [path, action]))
    if not b:
        raise LookupError(f"no button[data-action={action}] in the row of {path!r}; rows: {rows(d)}")
    d.click(b)


def step_load(d, a):
    open_dashboard(d, a)
    r = {"title": d.title(), "rows": rows(d), "gauge": text_of(d, "#gauge"), "gtext": text_of(d, "#gtext")}
    r["screenshot"] = d.screenshot(os.path.join(a.out, "dashboard-before.png"))
    return r


def step_prewarm(d, a):
    if not a.prewarm:
        raise ValueError("--prewarm is needed")
    r = {"before": rows(d, a.prewarm)}
    n = len(seen(d)["status"])
    t0 = time.monotonic()
    click_action(d, a.prewarm, "prewarm")

    def full():
        no_error_status(d, n, "the prewarm")
        row = rows(d, a.prewarm)
        return row if row and row["cells"] and row["res"] == len(row["cells"]) else None

    r["after"] = d.wait_until(full, 20, f"every strip cell of {a.prewarm} res")
    r["waited_ms"] = round((time.monotonic() - t0) * 1000)
    # the status line is set when the POST answers, which may follow the
    # refresh that showed the strip: give it a moment
    d.wait_until(lambda: any(a.prewarm in s["text"] and "…" not in s["text"] for s in status_since(d, n)),
                 5, "a #status result naming " + a.prewarm)
    r["status"] = status_since(d, n)
    r["screenshot"] = d.screenshot(os.path.join(a.out, "dashboard-prewarmed.png"))
    return r


def step_evict(d, a):
    if not a.evict:
        raise ValueError("--evict is needed")
    r = {"before": rows(d, a.evict)}
    n = len(seen(d)["status"])
    t0 = time.monotonic()
    click_action(d, a.evict, "evict")
    def gone():
        no_error_status(d, n, "the eviction")
        return rows(d, a.evict) is None

    r["gone"] = bool(d.wait_until(gone, 20, f"the row of {a.evict} gone"))
    r["waited_ms"] = round((time.monotonic() - t0) * 1000)
    d.wait_until(lambda: any(a.evict in s["text"] and "…" not in s["text"] for s in status_since(d, n)),
                 5, "a #status result naming " + a.evict)
    r["status"] = status_since(d, n)
    r["rows_after"] = [x["path"] for x in rows(d)]
    return r


def step_checks(d, a):
    r = {
        "gauge": text_of(d, "#gauge"),
        "gtext": text_of(d, "#gtext"),
        "rates": text_of(d, "#rates"),
        "interval": text_of(d, "#interval"),
        "status_final": d.execute("var s = document.getElementById('status'); return {text: s.textContent, cls: s.className}"),
        "origin": d.execute("return location.origin"),
        "resources": d.execute("return performance.getEntriesByType('resource').map(function (e) { return e.name; })"),
        "dialogs": d.execute("return window.__dialogs || []"),
    }
    s = seen(d) or {}
    r["csp"] = s.get("csp")
    r["page_errors"] = s.get("errors")
    r["foreign"] = [u for u in r["resources"] if not u.startswith(r["origin"] + "/")]
    return r


def step_auth(d, a):
    if not a.token:
        raise ValueError("--token is needed")
    open_dashboard(d, a, need_rows=False)
    auth = d.wait_until(lambda: d.find("#auth"), 5, "#auth")
    d.wait_until(lambda: d.displayed(auth), 10, "#auth displayed")
    r = {
        "auth_shown": d.displayed(auth),
        "main_hidden_before": not d.displayed(d.find("#main")),
        "rows_before": len(rows(d)),
        "auth_msg": text_of(d, "#auth-msg"),
        "updated": text_of(d, "#updated"),
        "focused": d.execute("return document.activeElement && document.activeElement.id"),
    }
    tok = d.find("#token")
    d.click(tok)
    d.send_keys(tok, a.token)
    d.click(d.find("#auth button[type=submit]"))
    d.wait_until(lambda: rows(d), 15, "rows in #entries after the token")
    r["auth_hidden_after"] = not d.displayed(auth)
    r["main_shown_after"] = d.displayed(d.find("#main"))
    r["rows"] = [x["path"] for x in rows(d)]
    r["gtext"] = text_of(d, "#gtext")
    r["screenshot"] = d.screenshot(os.path.join(a.out, "dashboard-auth.png"))
    return r


def step_shot(d, a):
    if not a.screenshot:
        raise ValueError("--screenshot is needed")
    if a.dark:
        d.cdp("Emulation.setEmulatedMedia", {"media": "", "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    open_dashboard(d, a)
    d.wait_until(lambda: "over" in (text_of(d, "#interval") or ""), 15, "rates over two samples")
    time.sleep(a.settle)
    # no focus ring, no hover; the status line empty unless something set it
    d.execute("document.activeElement && document.activeElement.blur && document.activeElement.blur()")
    r = {"rows": rows(d), "rates": text_of(d, "#rates"), "gtext": text_of(d, "#gtext"),
         "viewport": d.execute("return [innerWidth, innerHeight]")}
    os.makedirs(os.path.dirname(os.path.abspath(a.screenshot)), exist_ok=True)
    r["screenshot"] = d.screenshot(os.path.abspath(a.screenshot))
    return r


STEPS = [
    ("auth", step_auth),
    ("load", step_load),
    ("prewarm", step_prewarm),
    ("evict", step_evict),
    ("shot", step_shot),
    ("checks", step_checks),
]


def run(a):
    os.makedirs(a.out, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="chrome-profile-", dir=a.out)
    downloads = os.path.join(a.out, "downloads")
    started = time.monotonic()
    result = {"admin": a.admin}
    d = None
    try:
        d = Driver(a.chromedriver, os.path.join(a.out, "chromedriver.log"))
        try:
            caps = d.start_session(find_chrome(a.chrome), profile, downloads)
            d.cdp("Page.addScriptToEvaluateOnNewDocument", {"source": DIALOG_HOOK + SEEN_HOOK})
            if a.window:
                w, h = (int(x) for x in a.window.split("x"))
                d.wd("POST", "/window/rect", {"width": w, "height": h})
                # the window includes no chrome in headless mode, but make
                # the viewport exact in case it does
                vw, vh = d.execute("return [innerWidth, innerHeight]")
                if (vw, vh) != (w, h):
                    d.wd("POST", "/window/rect", {"width": 2 * w - vw, "height": 2 * h - vh})
            result["setup"] = {"browser_version": caps.get("browserVersion"),
                               "viewport": d.execute("return [innerWidth, innerHeight]")}
        except WebDriverError as e:
            raise RuntimeError(f"cannot start a Chromium session: {e}; chromedriver log: {tail(d.log_path)}")
        for name, fn in STEPS:
            if name not in a.steps:
                continue
            d.step = name
            t0 = time.monotonic()
            try:
                r = fn(d, a)
            except Exception as e:  # one step's failure must not hide the others
                r = {"error": f"{type(e).__name__}: {e}"}
                try:
                    r["url"] = d.current_url()
                    r["rows_now"] = rows(d)
                except Exception:
                    pass
            r["ms"] = round((time.monotonic() - t0) * 1000)
            result[name] = r
        d.step = "end"
        result["console_errors"] = d.console_errors()
        try:
            result["seen"] = seen(d)
        except WebDriverError:
            result["seen"] = None
    finally:
        if d is not None:
            d.quit()
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(downloads, ignore_errors=True)
    result["failed_steps"] = [n for n, _ in STEPS if "error" in (result.get(n) or {})]
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--admin", required=True, help="http://127.0.0.1:PORT of mapserve's admin listener")
    ap.add_argument("--out", required=True, help="directory for screenshots, logs, the browser profile")
    ap.add_argument("--steps", default="load,prewarm,evict,checks", help="comma-separated steps to run")
    ap.add_argument("--prewarm", help="URL path of the row to prewarm")
    ap.add_argument("--evict", help="URL path of the row to evict")
    ap.add_argument("--token", help="the admin token to type into the form (auth step)")
    ap.add_argument("--screenshot", help="where the shot step writes its PNG")
    ap.add_argument("--window", default="1280x900", help="viewport WIDTHxHEIGHT")
    ap.add_argument("--settle", type=float, default=0.5, help="seconds the shot step waits after the rates show")
    ap.add_argument("--dark", action="store_true", help="the shot step emulates prefers-color-scheme: dark")
    ap.add_argument("--chromedriver", default=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    ap.add_argument("--chrome", help="browser binary (default: $CHROME_BIN or chromium on PATH)")
    ap.add_argument("--max-seconds", type=int, default=120, help="give up (cleanly) after this long")
    a = ap.parse_args()
    a.steps = [s.strip() for s in a.steps.split(",") if s.strip()]
    unknown = set(a.steps) - {n for n, _ in STEPS}
    if unknown:
        sys.exit(f"dashboard.py: unknown steps {sorted(unknown)}")
    a.admin = a.admin.rstrip("/")
    a.out = os.path.abspath(a.out)

    drive("dashboard.py", run, a)


if __name__ == "__main__":
    main()
