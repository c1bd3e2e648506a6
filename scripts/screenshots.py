"""Sign in as the demo clinician and screenshot the main pages with Debian's headless Chromium.

.venv/bin/python scripts/screenshots.py --base http://127.0.0.1:8000 --password PASSWORD [--out screenshots]
"""

import argparse
import re
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORTS = {"desktop": (1366, 768), "phone": (390, 844)}


def list_and_latest(page, url: str, list_path: Path, detail_path: Path):
    """Screenshot a list of runs, then the newest run in it when there is one."""
    page.goto(url)
    page.screenshot(path=list_path, full_page=True)
    runs = page.locator("table.patients tbody a")
    if runs.count():
        runs.first.click()
        page.wait_for_load_state()
        page.screenshot(path=detail_path, full_page=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--username", default="demo-clinician")
    parser.add_argument("--password", required=True)
    parser.add_argument("--out", default="screenshots")
    parser.add_argument("--patient-query", default="", help="Search text that finds the patient to open.")
    parser.add_argument("--refinement", action="store_true", help="Also the refinement pages (sign in as a curator).")
    parser.add_argument(
        "--evaluations", action="store_true", help="Also the evaluation list and the latest evaluation."
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for name, (width, height) in VIEWPORTS.items():
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(f"{args.base}/")
            page.screenshot(path=out / f"{name}-signin.png")
            page.fill("#id_username", args.username)
            page.fill("#id_password", args.password)
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r".*/patients/.*"))
            page.screenshot(path=out / f"{name}-patients.png", full_page=False)
            page.select_option("#id_pregnant", "yes")
            page.wait_for_timeout(800)
            page.screenshot(path=out / f"{name}-patients-pregnant.png")
            page.locator("table.patients tbody a").first.click()
            page.wait_for_load_state()
            page.screenshot(path=out / f"{name}-patient.png", full_page=True)
            if args.refinement:
                list_and_latest(
                    page, f"{args.base}/refinement/", out / f"{name}-refinement.png", out / f"{name}-refinement-run.png"
                )
            if args.evaluations:
                list_and_latest(
                    page, f"{args.base}/evaluations/", out / f"{name}-evaluations.png", out / f"{name}-evaluation.png"
                )
            page.close()
        browser.close()
    print(f"Screenshots in {out}/")


if __name__ == "__main__":
    main()
