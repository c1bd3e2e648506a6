"""Play the EHR: open a shipped Synthea patient's chart and call the clinic's CDS Hooks service, as Epic, Oracle
Health or OpenEMR would.

1. Make the EHR's signing key (once, under var/ehr-example/) and print the public JWK Set a curator registers.
2. Read the clinic's discovery endpoint.
3. Build the prefetch the EHR's FHIR server would answer for her (dated as the demo dates Synthea), sign a JWT
   (ES384, `aud` = the service URL, a fresh `jti`), POST the patient-view call and print the cards.
4. Print the SMART launch URL the EHR opens when the clinician clicks the card's link.

    .venv/bin/python examples/ehr_cds_hooks.py --register          # once: prints the register_ehr command
    .venv/bin/python examples/ehr_cds_hooks.py [--base-url http://127.0.0.1:8000] [--patient SYNTHEA_ID]

Needs the project's packages (httpx, PyJWT, cryptography); no Django.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cdshooks.ehr import patient_view_body, public_jwks, signed_jwt, synthea_prefetch  # noqa: E402

ISSUER = "https://ehr.demo.example"
FHIR_BASE = "https://ehr.demo.example/fhir"
KID = "demo-ehr-1"
# Pregnant, second trimester, raised blood pressure and a previous caesarean once dated as the demo dates her.
PATIENT = "718413e0-9b98-4c34-9575-fdb4e5179738"


def signing_key(folder: Path):
    path = folder / "ehr-private-key.pem"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP384R1())
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)
        (folder / "ehr-jwks.json").write_text(json.dumps(public_jwks(key, kid=KID), indent=2))
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--patient", default=PATIENT, help="A Synthea patient id from demo_data/synthea_obgyn.")
    parser.add_argument("--keys", type=Path, default=ROOT / "var" / "ehr-example")
    parser.add_argument("--register", action="store_true", help="Print how to register this EHR, then stop.")
    args = parser.parse_args()
    base = args.base_url.rstrip("/")
    key = signing_key(args.keys)
    if args.register:
        print("Register this EHR with the demo clinic (once):\n")
        print(
            f"  .venv/bin/python manage.py register_ehr --org demo-clinic --name 'Demo EHR' --issuer {ISSUER} "
            f"--jwks {args.keys / 'ehr-jwks.json'} --fhir-base-url {FHIR_BASE}"
        )
        return 0

    discovery = httpx.get(f"{base}/cds-services", timeout=10).json()
    service = discovery["services"][0]
    print(f"Discovery: {service['id']} on {service['hook']}, prefetch {', '.join(service['prefetch'])}")

    patient_id, prefetch = synthea_prefetch(args.patient, date.today())
    url = f"{base}/cds-services/{service['id']}"
    token = signed_jwt(key, kid=KID, issuer=ISSUER, audience=url)
    started = time.perf_counter()
    response = httpx.post(
        url, json=patient_view_body(patient_id, prefetch), headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        print(f"The service answered {response.status_code}: {response.text[:500]}")
        if response.status_code == 401:
            print("Is this EHR registered? Run this script with --register.")
        return 1
    cards = response.json()["cards"]
    print(f"{len(cards)} cards in {elapsed:.0f} ms:\n")
    for card in cards:
        print(f"[{card['indicator']}] {card['summary']}")
        for line in card.get("detail", "").splitlines():
            if line.strip():
                print(f"    {line}")
        for link in card.get("links", []):
            launch = f"{link['url']}&iss={FHIR_BASE}&launch=demo-launch"  # as the EHR opens it
            print(f"    → {link['label']} ({link['type']} link): {launch}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
