"""The built book in a real browser: headless Chromium (Debian's package) over file://.

Run after a build (``make check-html``, which CI runs after ``make book``): it needs the HTML
in ``$PIFS_BOOK_HTML`` (default ``_build/html``) and a Chromium executable (``$CHROMIUM``,
default ``/usr/bin/chromium``); without them the tests are skipped. Each page is opened with
no network at all (every request that is not file:, data: or blob: is recorded and aborted)
and checked as a reader would see it: math typeset by the shipped MathJax (no raw ``\\(`` left,
including the sidebar), every image loaded, no table wider than the content column, and no
remote request.
"""
import os
import shutil
from pathlib import Path

import pytest

HTML = Path(os.environ.get("PIFS_BOOK_HTML", Path(__file__).resolve().parents[2] / "_build" / "html"))
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

PAGES = ["book/intro.html", "book/how-to-read.html", "book/report.html", "book/errata.html",
         "notebooks/02_background.html", "notebooks/06_practical.html", "notebooks/07_regimes_crossover.html"]

pytestmark = pytest.mark.skipif(not (HTML / "index.html").is_file() or not Path(CHROMIUM).is_file(),
                                reason=f"no built book in {HTML} or no Chromium at {CHROMIUM}")

_MEASURE = """() => {
  const art = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const cs = getComputedStyle(art);
  const width = art.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);  // the content column
  const wide = [...art.querySelectorAll('table')]
      .filter(t => Math.max(t.getBoundingClientRect().width, t.scrollWidth) > width + 1)
      .map(t => (t.className || 'table') + ': ' + Math.round(Math.max(t.getBoundingClientRect().width, t.scrollWidth)) + ' px');
  const text = document.body.innerText;
  const raw = (text.match(/\\\\\\(|\\\\\\[/g) || []).length;
  const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src);
  return {width, wide, raw, mjx: document.querySelectorAll('mjx-container').length, broken,
          mathjax: typeof window.MathJax === 'object' && !!window.MathJax.startup};
}"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _open(browser, page):
    remote = []
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()

    def route(r):
        if r.request.url.startswith(("file:", "data:", "blob:")):
            r.continue_()
        else:
            remote.append(r.request.url)
            r.abort()

    pg.route("**/*", route)
    pg.goto((HTML / page).as_uri(), wait_until="load")
    try:  # MathJax 3 typesets asynchronously: wait for its promise where the page loads it
        pg.wait_for_function("() => !window.MathJax || (window.MathJax.startup && window.MathJax.startup.promise)",
                             timeout=10_000)
        pg.evaluate("() => window.MathJax && window.MathJax.startup.promise")
    except Exception:
        pass
    pg.wait_for_timeout(300)
    info = pg.evaluate(_MEASURE)
    ctx.close()
    return info, remote


@pytest.mark.parametrize("page", PAGES)
def test_page_reads_offline(browser, page):
    if not (HTML / page).is_file():
        pytest.skip(f"{page} not in this build")
    info, remote = _open(browser, page)
    assert not remote, f"{page} requests remote URLs: {remote[:5]}"
    assert info["raw"] == 0, f"{page}: {info['raw']} raw LaTeX delimiters left (MathJax did not typeset)"
    assert info["mathjax"], f"{page}: the shipped MathJax did not load"
    assert not info["broken"], f"{page}: images that did not load: {info['broken'][:5]}"
    assert not info["wide"], f"{page}: tables wider than the {info['width']:.0f} px column: {info['wide'][:5]}"


def test_math_is_typeset_on_a_chapter(browser):
    info, _ = _open(browser, "notebooks/06_practical.html")
    assert info["mjx"] > 20, "the §6 chapter should show typeset formulas"


def test_no_machine_paths_or_raw_records_in_pages():
    bad = []
    for f in [*HTML.rglob("*.html"), *HTML.rglob("*.ipynb")]:  # the pages and the downloadable notebooks
        text = f.read_text(encoding="utf-8", errors="replace")
        needles = ("/work/", "/tmp/", "{'id': ") + (("\"id\": \"",) if f.suffix == ".html" else ())  # .ipynb cells have ids
        for needle in needles:
            if needle in text:
                bad.append(f"{f.relative_to(HTML)}: {needle!r}")
    assert not bad, f"leaked paths or raw records: {bad[:10]}"
