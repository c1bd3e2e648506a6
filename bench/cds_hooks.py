"""The CDS Hooks patient-view call as an EHR makes it, timed beside the partner API's one-patient read.

In-process (Django's test client through the whole middleware stack, the audit trail on) on a 40-patient demo
cohort under var/bench/cds (SQLite; BENCH_DATABASE_URL=postgresql://… for PostgreSQL): each Synthea patient's
chart is opened twice (the hook verifies a fresh ES384 JWT, parses and upserts her prefetched record, reads her
flags and peers, answers cards), and her record is read through `GET /api/v1/patients/<id>/` as often, in
alternation. Prints a table, then one JSON line. Target: hook p95 ≤ 300 ms.

    .venv/bin/python bench/cds_hooks.py [--rounds 2] [--patients 40]
"""

import argparse
import json
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PMLM_VAR_DIR", str(ROOT / "var" / "bench" / "cds"))
os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pmlm_site.settings")
if os.environ.get("BENCH_DATABASE_URL"):
    os.environ["DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--patients", type=int, default=40)
    args = parser.parse_args()

    import django

    django.setup()
    from cryptography.hazmat.primitives.asymmetric import ec
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment

    from api.tokens import token_issue
    from cdshooks.ehr import patient_view_body, public_jwks, signed_jwt, synthea_prefetch
    from cdshooks.services import SERVICE_ID, ehr_client_register
    from patients.demo.seed import demo_seed
    from patients.demo.synthea import SYNTHEA_DIR
    from patients.models import Organisation, Patient

    setup_test_environment()
    call_command("migrate", verbosity=0)
    organisation = Organisation.objects.filter(slug="demo-clinic").first()
    if organisation is None or not organisation.patients.exists():
        print("… seeding 40 demo patients and training their peers", file=sys.stderr, flush=True)
        demo_seed(limit=args.patients, synthetic_patients=0, knowledge=False, password="bench-password-1")
        call_command("train_peers", verbosity=0)
        organisation = Organisation.objects.get(slug="demo-clinic")
    key = ec.generate_private_key(ec.SECP384R1())
    ehr_client_register(
        organisation=organisation,
        name="Bench EHR",
        issuer="https://ehr.bench.example",
        jwks=public_jwks(key, kid="b-1"),
    )
    _, token = token_issue(username="demo-partner", name="bench")
    ids = sorted(
        set(Patient.objects.filter(organisation=organisation).values_list("external_id", flat=True))
        & {p.name.split(".")[0] for p in SYNTHEA_DIR.glob("*.json.gz")}
    )[: args.patients]
    prefetches = {pid: synthea_prefetch(pid, date.today())[1] for pid in ids}
    client = Client()
    url = f"http://testserver/cds-services/{SERVICE_ID}"
    hook_ms, api_ms, cards = [], [], []
    for _ in range(args.rounds):
        for pid in ids:
            body = json.dumps(patient_view_body(pid, prefetches[pid]))
            jwt = signed_jwt(key, kid="b-1", issuer="https://ehr.bench.example", audience=url)
            started = time.perf_counter()
            response = client.post(
                f"/cds-services/{SERVICE_ID}",
                data=body,
                content_type="application/json",
                headers={"Authorization": f"Bearer {jwt}"},
            )
            hook_ms.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.content[:500]
            cards.append(len(response.json()["cards"]))
            started = time.perf_counter()
            response = client.get(f"/api/v1/patients/{pid}/", headers={"Authorization": f"Bearer {token}"})
            api_ms.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.content[:500]
    entries = [sum(len((p.get(k) or {}).get("entry", [])) for k in p if k != "patient") for p in prefetches.values()]
    result = {
        "patients": len(ids),
        "calls": len(hook_ms),
        "prefetch_resources_median": statistics.median(entries),
        "cards_median": statistics.median(cards),
        "hook_p50_ms": round(statistics.median(hook_ms), 1),
        "hook_p95_ms": round(percentile(hook_ms, 0.95), 1),
        "api_one_patient_p50_ms": round(statistics.median(api_ms), 1),
        "api_one_patient_p95_ms": round(percentile(api_ms, 0.95), 1),
    }
    result["ratio_p50"] = round(result["hook_p50_ms"] / result["api_one_patient_p50_ms"], 2)
    print(
        f"CDS Hooks patient-view on {len(ids)} patients × {args.rounds} (median {result['prefetch_resources_median']} "
        f"prefetched resources, {result['cards_median']} cards)"
    )
    print("| call | p50 ms | p95 ms |")
    print("|---|---|---|")
    print(f"| baseline: API one patient | {result['api_one_patient_p50_ms']} | {result['api_one_patient_p95_ms']} |")
    print(f"| CDS Hooks patient-view | {result['hook_p50_ms']} | {result['hook_p95_ms']} |")
    print(f"ratio of medians (hook / API read): {result['ratio_p50']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
