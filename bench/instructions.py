"""Instructions per request, counted by callgrind: a figure this noisy machine cannot move.

Each target is asked N times in one process (Django's test client through the whole middleware stack, production
settings, the audit trail on, the load test's cohort: PostgreSQL with BENCH_DATABASE_URL, else SQLite), under
`valgrind --tool=callgrind`. The same process asking the target nothing (after the same sign-in and warm-up) is
counted too; the difference over N is the target's instructions per request. The baseline is the sign-in page in
the same run. Instructions are not time (a cache miss costs more than an add, and the database server's own work is
not counted: bench/load.py measures both), but they repeat: two runs of the same code agreed within 0.5% on four
targets and 3% on the fifth, where timings here move by a third between runs.

    .venv/bin/python bench/instructions.py [--requests 50]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = [  # (name, who asks)
    ("baseline: sign-in page", "nobody"),
    ("API patient list", "partner"),
    ("API one patient", "partner"),
    ("page: patient list", "demo-clinician"),
    ("page: patient record", "demo-clinician"),
]
WARM_UP = 20


def ask(target: str, requests: int) -> None:
    """In the counted process: sign in as the target's asker, warm up, then ask `requests` times."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    from api.tokens import token_issue
    from patients.models import Patient

    client, headers = Client(), {}
    who = dict(TARGETS)[target]
    patient = Patient.objects.filter(organisation__slug="demo-clinic").order_by("pk").first()
    path = {
        "baseline: sign-in page": "/accounts/login/",
        "API patient list": "/api/v1/patients/",
        "API one patient": f"/api/v1/patients/{patient.external_id}/",
        "page: patient list": "/patients/",
        "page: patient record": f"/patients/{patient.pk}/",
    }[target]
    if who == "partner":
        _, token = token_issue(username="demo-partner", name="instructions")
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    elif who != "nobody":
        client.force_login(get_user_model().objects.get(username=who))
    for _ in range(WARM_UP):
        status = client.get(path, **headers).status_code
        if status != 200:
            raise SystemExit(f"{target}: {path} answered {status}")
    for _ in range(requests):
        client.get(path, **headers)


def counted(env: dict, target: str, requests: int) -> int:
    """Instructions of a whole process asking `target` `requests` times, the audit inbox empty when it starts (entries
    an earlier process left waiting are chained first, outside the count, not inside whichever run comes next)."""
    link = [sys.executable, "-c", "import django; django.setup(); from audit.services import audit_link; audit_link()"]
    subprocess.run(link, cwd=ROOT, env=env, check=True)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__]
            + ["--ask", target, "--requests", str(requests)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        match = re.search(r"Collected : (\d+)", run.stderr)
        if run.returncode != 0 or not match:
            raise SystemExit(f"callgrind failed for {target}:\n{run.stderr[-2000:]}")
        return int(match.group(1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--ask", help=argparse.SUPPRESS)  # in the counted process
    args = parser.parse_args()
    if args.ask:
        ask(args.ask, args.requests)
        return
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is missing: install Debian's 'valgrind' package.")
    from bench.load import cohort, manage

    env, _ = cohort(args.patients)
    manage(env, "collectstatic", "--noinput", "-v", "0")
    env["DJANGO_SETTINGS_MODULE"] = "pmlm_site.settings"
    # Under callgrind a request takes ~50 times as long: what expires by the clock would expire between a few
    # requests. As on a server at full speed, a kept account or token lasts the run, and audit entries are linked
    # into the chain every PMLM_AUDIT_LINK_EVERY (64) entries rather than every 2 s.
    env.update(PMLM_ACCOUNT_CACHE_SECONDS="3600", PMLM_TOKEN_CACHE_SECONDS="3600", PMLM_AUDIT_LINK_SECONDS="3600")
    env["PYTHONHASHSEED"] = "0"  # the same string hashes, so the same dict and set layouts, in every counted process
    results = []
    for target, _ in TARGETS:
        print(f"… {target}", file=sys.stderr, flush=True)
        asked, idle = counted(env, target, args.requests), counted(env, target, 0)
        results.append({"target": target, "instructions_per_request": round((asked - idle) / args.requests)})
    baseline = results[0]["instructions_per_request"]
    print(f"\n{f'instructions per request ({args.requests} requests, callgrind)':<50}{'millions':>10}{'ratio':>8}")
    for row in results:
        row["ratio_to_baseline"] = round(baseline / row["instructions_per_request"], 3)
        print(f"{row['target']:<50}{row['instructions_per_request'] / 1e6:>10.2f}{row['ratio_to_baseline']:>8.3f}")
    print("(ratio: the sign-in page's instructions over the target's, as req/s ratios read)")
    database = "PostgreSQL" if env.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
    print(json.dumps({"instructions": results, "requests": args.requests, "database": database}))


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pmlm_site.settings")
    main()
