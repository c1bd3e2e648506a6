"""Load test on loopback: the partner API and the patient pages under gunicorn, driven by wrk.

Production settings (DEBUG off) on a small demo cohort under var/bench/load; 2 gunicorn workers;
each target gets `wrk -t2 -c8 -d10s` (bounded, loopback only). The baseline is the sign-in page on the
same server: a Django page that reads no patient data. It is measured again just before every target, and each
target's ratio is against that paired baseline, so a machine that slows down or speeds up during the run moves
both sides of a ratio alike. Her record page is measured twice: as it is served (the clinical part rendered once
and kept under her record version) and as a first opening (a second gunicorn with PMLM_RECORD_CACHE_SECONDS=0, so
every request reads and renders her record). With --rounds N everything is measured N times, one round after the
other, and the table gives medians. Prints a table, then one JSON line.

    .venv/bin/python bench/load.py [--rounds 3] [--duration 10] [--connections 8] [--patients 40]
"""

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench" / "load"
PY = sys.executable
BASELINE_PATH = "/accounts/login/"  # the sign-in page: Django, no patient data
WRK_SCRIPT = """
local headers = {HEADERS}
request = function()
  return wrk.format("GET", nil, headers)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %.3f %.3f %.3f %d\\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status +
    summary.errors.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manage(env, *args):
    run = subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{run.stderr[-2000:]}")
    return run.stdout


def ensure_wrk():
    if shutil.which("wrk"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
        return
    raise SystemExit("wrk is missing: install Debian's 'wrk' package (sudo apt-get install wrk).")


def wrk(url: str, headers: dict, *, duration: int, connections: int) -> dict:
    lua = "{" + ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items()) + "}"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.replace("{HEADERS}", lua))
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", script.name, url],
        capture_output=True,
        text=True,
    )
    os.unlink(script.name)
    match = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+) (\d+)", out.stdout)
    if not match:
        raise SystemExit(f"wrk gave no result for {url}:\n{out.stdout}\n{out.stderr}")
    requests_done, micros, p50, p95, p99, errors = match.groups()
    return {
        "requests": int(requests_done),
        "rps": round(int(requests_done) / (int(micros) / 1e6), 1),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "errors": int(errors),
    }


def api_headers(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def start_server(env: dict, workers: int, threads: int = 1):
    """gunicorn on a free loopback port, every worker warmed: (the process, its base URL). With threads > 1 each
    worker serves that many requests at once (gunicorn's gthread worker)."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(PY).with_name("gunicorn")), "pmlm_site.wsgi", "-w", str(workers), "-b", f"127.0.0.1:{port}"]
        + (["-k", "gthread", "--threads", str(threads)] if threads > 1 else [])
        + ["--log-level", "warning"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(150):  # the workers import the app on their first request
        try:
            requests.get(f"{base}/accounts/login/", timeout=15)
            break
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.2)
    for _ in range(workers * 3):  # warm every worker before measuring
        requests.get(f"{base}/accounts/login/", timeout=30)
    return server, base


def sign_in(base: str, password: str) -> dict:
    """The demo clinician signed in: the Cookie header her pages are asked with."""
    session = requests.Session()
    session.get(f"{base}/accounts/login/")
    session.post(
        f"{base}/accounts/login/",
        data={"username": "demo-clinician", "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{base}/accounts/login/"},
    )
    return {"Cookie": f"sessionid={session.cookies['sessionid']}"}


def cohort(patients: int) -> tuple[dict, str]:
    """The load test's demo cohort under var/bench/load, migrated and seeded once (on PostgreSQL with
    BENCH_DATABASE_URL, else SQLite): the environment production settings run on, and the demo password."""
    VAR.mkdir(parents=True, exist_ok=True)
    password = "load-test-password-1"
    key_file = VAR / "audit-key"  # the audit chain's key, kept with the cohort it signs
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(48))
    env = dict(
        os.environ,
        PMLM_VAR_DIR=str(VAR),
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        DJANGO_SSL_REDIRECT="0",
        DJANGO_SECURE_COOKIES="0",
        DJANGO_HSTS_SECONDS="0",
        PMLM_API_RATE="100000000/min",
        HF_HUB_OFFLINE="1",
        DATABASE_CONN_MAX_AGE="60",
        PMLM_SIGNIN_FAILURES="1000",
        PMLM_AUDIT_KEY=key_file.read_text().strip(),
        # No page measured here retrieves guidance: the workers skip loading the retrieval model as they start,
        # which would otherwise take a core for seconds into the first measurement.
        PMLM_WARM_ON_START="0",
    )
    env.pop("DATABASE_URL", None) if not os.environ.get("BENCH_DATABASE_URL") else env.update(
        DATABASE_URL=os.environ["BENCH_DATABASE_URL"]
    )
    manage(env, "migrate", "--noinput", "-v", "0")
    marker = VAR / (".seeded-" + ("postgres" if env.get("DATABASE_URL", "").startswith("postgres") else "sqlite"))
    if not marker.exists():
        print(f"… seeding {patients} patients", file=sys.stderr, flush=True)
        manage(env, "seed_demo", "--limit", str(patients), "--password", password, "--no-knowledge")
        marker.touch()
    return env, password


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads a worker (1: gunicorn's sync worker)")
    parser.add_argument("--rounds", type=int, default=1, help="measure everything this many times; medians")
    args = parser.parse_args()
    ensure_wrk()
    env, password = cohort(args.patients)
    manage(env, "collectstatic", "--noinput", "-v", "0")
    token = manage(env, "issue_token", "demo-partner", "--name", "load test").strip().splitlines()[-1]
    session_cookie, first = None, None
    measured = []  # (round, target, path, its figures, the paired baseline's figures)
    for round_number in range(1, args.rounds + 1):
        for record_cache in ("600", "0"):  # then her record page as a first opening reads it: rendering not kept
            server, base = start_server(dict(env, PMLM_RECORD_CACHE_SECONDS=record_cache), args.workers, args.threads)
            try:
                if session_cookie is None:
                    session_cookie = sign_in(base, password)
                    first = requests.get(f"{base}/api/v1/patients/?page_size=1", headers=api_headers(token)).json()
                    first = first["results"][0]["id"]
                    page_pk = re.search(
                        r'href="/patients/(\d+)/"', requests.get(f"{base}/patients/", headers=session_cookie).text
                    ).group(1)
                if record_cache != "0":
                    targets = [
                        ("API patient list", "/api/v1/patients/", api_headers(token)),
                        ("API one patient", f"/api/v1/patients/{first}/", api_headers(token)),
                        ("page: patient list", "/patients/", session_cookie),
                        ("page: patient record", f"/patients/{page_pk}/", session_cookie),
                    ]
                else:
                    targets = [("page: record, not kept", f"/patients/{page_pk}/", session_cookie)]
                for name, path, headers in targets:
                    print(f"… round {round_number}: sign-in page, then {name}", file=sys.stderr, flush=True)
                    paired = wrk(base + BASELINE_PATH, {}, duration=args.duration, connections=args.connections)
                    figures = wrk(base + path, headers, duration=args.duration, connections=args.connections)
                    measured.append((round_number, name, path, figures, paired))
            finally:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=30)
    results = summarise(measured)
    print(
        f"\n{f'load test (gunicorn, {args.workers} workers × {args.threads} threads)':<32}"
        f"{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'rps ratio':>11}  {'medians of ' + str(args.rounds) + ' rounds; ' if args.rounds > 1 else ''}"
        "ratio to the sign-in page measured just before"
    )
    for row in results:
        each = f"  ({', '.join(f'{r:.2f}' for r in row['ratios'])})" if args.rounds > 1 and row["ratios"] else ""
        print(
            f"{row['target']:<32}{row['rps']:>9}{row['p50_ms']:>9}{row['p95_ms']:>9}{row['p99_ms']:>9}{row['errors']:>8}"
            f"{row['ratio']:>11.2f}{each}"
        )
    database = "PostgreSQL" if env.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
    print(
        json.dumps(
            {
                "load": results,
                "rounds": [
                    {"round": n, "target": name, **figures, "baseline_rps": paired["rps"]}
                    for n, name, _, figures, paired in measured
                ],
                "connections": args.connections,
                "duration_s": args.duration,
                "workers": args.workers,
                "threads": args.threads,
                "database": database,
            }
        )
    )


def summarise(measured) -> list[dict]:
    """One row per target, baseline first: medians over the rounds of req/s and latencies; errors summed; each
    target's ratio is the median of its rounds' ratios to the baseline measured just before it (the baseline row:
    every one of those measurements)."""
    rows = {"baseline: sign-in page": {"path": BASELINE_PATH, "runs": [], "ratios": []}}
    for _, name, path, figures, paired in measured:
        rows["baseline: sign-in page"]["runs"].append(paired)
        row = rows.setdefault(name, {"path": path, "runs": [], "ratios": []})
        row["runs"].append(figures)
        row["ratios"].append(figures["rps"] / paired["rps"])
    summary = []
    for name, row in rows.items():
        runs = row["runs"]
        ratios = [round(r, 3) for r in row["ratios"]]  # none for the baseline itself
        summary.append(
            {
                "target": name,
                "path": row["path"],
                "requests": sum(r["requests"] for r in runs),
                **{k: round(statistics.median(r[k] for r in runs), 1) for k in ("rps", "p50_ms", "p95_ms", "p99_ms")},
                "errors": sum(r["errors"] for r in runs),
                "ratio": round(statistics.median(ratios), 3) if ratios else 1.0,
                "ratios": ratios,
            }
        )
    return summary


if __name__ == "__main__":
    main()
