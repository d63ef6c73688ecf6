"""Check the built documentation in a real browser.

Serves the HTML directory on 127.0.0.1 (``http.server`` in a thread), takes
headless-Chromium screenshots of the landing page, one API page and one gallery
page, and fails (exit status 1) if a page is missing, has the wrong title, or
renders blank (a uniform screenshot or almost no visible colour variation).

    python docs/check_site.py BUILD_DIR [--screenshots DIR] [--browser PATH]

Needs Chromium (``apt-get install chromium``) and Pillow (the ``docs`` extra).
"""

import argparse
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urljoin

# (path in the build, text the <title> must contain, text the body must contain,
#  an image the page must show (substring of an <img src>) or None, screenshot height)
PAGES = [
    ("index.html", "skinvert", "Latent-Pursuit", "inpainting.png", 1000),
    ("api/generated/skinvert.LatentPursuitInverter.html", "LatentPursuitInverter", "noise_std",
     None, 1000),
    ("auto_examples/plot_inpainting.html", "Inpainting", "GeneratorImputer",
     "sphx_glr_plot_inpainting_001.png", 2400),
    ("architecture.html", "Architecture", "skinvert/algorithms/latent_pursuit.py", None, 1500),
    ("auto_examples/plot_compressed_sensing.html", "Compressed sensing", "HybridInverter",
     "sphx_glr_plot_compressed_sensing_001.png", 2400),
]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser(explicit=None):
    for name in ([explicit] if explicit else []) + list(BROWSERS):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def serve(directory):
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def screenshot(browser, url, out, size=(1280, 900)):
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}",
               "--virtual-time-budget=5000", f"--window-size={size[0]},{size[1]}",
               f"--screenshot={out}", url]
        res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    if not Path(out).exists():
        raise RuntimeError(f"no screenshot of {url}: {res.stderr[-800:]}")


def blank_reason(png):
    """Why the screenshot looks blank, or None if it shows a rendered page."""
    from PIL import Image, ImageStat

    img = Image.open(png).convert("RGB")
    lo, hi = zip(*img.getextrema())
    if all(a == b for a, b in zip(lo, hi)):
        return "the screenshot is one uniform colour"
    gray = img.convert("L")
    stddev = ImageStat.Stat(gray).stddev[0]
    # share of pixels that differ clearly from the page's dominant (background) colour
    hist = gray.histogram()
    background = max(range(256), key=hist.__getitem__)
    ink = sum(n for v, n in enumerate(hist) if abs(v - background) > 40) / sum(hist)
    if stddev < 5 or ink < 0.01:
        return f"almost nothing drawn (gray stddev {stddev:.1f}, {ink:.2%} non-background)"
    return None


def check(build, shots, browser):
    build = Path(build)
    server = serve(build)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    failures = []
    try:
        for path, title, body_text, image, height in PAGES:
            url = base + path
            n_failed = len(failures)
            try:
                html = urllib.request.urlopen(url, timeout=30).read().decode("utf-8")
            except Exception as exc:  # noqa: BLE001 - report any failure to fetch
                failures.append(f"{path}: not served ({exc})")
                continue
            head_title = html.split("<title>", 1)[-1].split("</title>", 1)[0]
            if title not in head_title:
                failures.append(f"{path}: title {head_title!r} lacks {title!r}")
            if body_text not in html:
                failures.append(f"{path}: page lacks {body_text!r}")
            if image is not None:
                srcs = re.findall(r'<img[^>]*src="([^"]+)"', html)
                src = next((s for s in srcs if image in s), None)
                if src is None:
                    failures.append(f"{path}: no <img> showing {image!r}")
                else:
                    try:
                        n = len(urllib.request.urlopen(urljoin(url, src), timeout=30).read())
                    except Exception as exc:  # noqa: BLE001
                        n, src = 0, f"{src} ({exc})"
                    if n < 1000:
                        failures.append(f"{path}: image {src} missing or empty")
            png = shots / (path.replace("/", "__").replace(".html", ".png"))
            try:
                screenshot(browser, url, png, size=(1280, height))
            except Exception as exc:  # noqa: BLE001
                failures.append(f"{path}: {exc}")
                continue
            reason = blank_reason(png)
            if reason:
                failures.append(f"{path}: {reason} ({png})")
            if len(failures) == n_failed:
                print(f"ok  {path}: title {head_title.strip()!r}, screenshot {png}")
    finally:
        server.shutdown()
    return failures


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("build", help="the HTML output directory of sphinx")
    p.add_argument("--screenshots", default=None,
                   help="where to write the PNGs (default: a new temporary directory)")
    p.add_argument("--browser", default=None, help="Chromium executable")
    a = p.parse_args(argv)
    browser = find_browser(a.browser)
    if browser is None:
        print("no Chromium found (apt-get install chromium)", file=sys.stderr)
        return 1
    shots = Path(a.screenshots or tempfile.mkdtemp(prefix="skinvert-screens-"))
    shots.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HOME", tempfile.gettempdir())
    failures = check(a.build, shots, browser)
    for f in failures:
        print("FAIL", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
