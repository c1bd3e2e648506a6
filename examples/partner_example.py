"""A partner integration in one file, using only `requests`:

1. import a FHIR R4 transaction Bundle for a patient,
2. fetch her personalised, de-identified hard prompt (to use with your own LLM),
3. request guidance from the clinic's LLM asynchronously, safely retried with an Idempotency-Key,
4. poll it until it is done, and print it.

    PMLM_API=http://127.0.0.1:8000 PMLM_TOKEN=pmlm_… python examples/partner_example.py BUNDLE.json[.gz]

Get a token with `manage.py issue_token USERNAME` (a partner account of your organisation).
"""

import gzip
import json
import os
import sys
import time
import uuid

import requests


def main(bundle_path: str) -> int:
    base = os.environ.get("PMLM_API", "http://127.0.0.1:8000").rstrip("/")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {os.environ['PMLM_TOKEN']}"

    opener = gzip.open if bundle_path.endswith(".gz") else open
    with opener(bundle_path, "rb") as handle:
        response = session.post(
            f"{base}/api/v1/bundles/",
            data=handle.read(),
            headers={"Content-Type": "application/fhir+json"},
            timeout=120,
        )
    if response.status_code != 200:
        body = response.json()
        where = ", ".join(body.get("issue", [{}])[0].get("expression", []))
        print(
            f"Import refused ({response.status_code}): {body['error']['message']}" + (f" [{where}]" if where else ""),
            file=sys.stderr,
        )
        return 1
    patient_id = response.json()["patients"][0]
    print(
        f"Imported patient {patient_id}: {response.json()['created']} records created, "
        f"{response.json()['updated']} updated"
    )

    question = "What should we plan for her next visit?"
    prompt = session.post(f"{base}/api/v1/patients/{patient_id}/prompt/", json={"question": question}, timeout=60)
    prompt.raise_for_status()
    print(f"Personalised prompt ({len(prompt.json()['risk_flags'])} risk flags, de-identified):")
    print(prompt.json()["prompt"][:400] + "…")

    key = str(uuid.uuid4())  # the same key on a retry returns the same request, never a second one
    for attempt in range(3):
        try:
            accepted = session.post(
                f"{base}/api/v1/patients/{patient_id}/guidance/",
                json={"question": question},
                headers={"Idempotency-Key": key},
                timeout=30,
            )
            break
        except requests.ConnectionError:
            time.sleep(2**attempt)
    else:
        print("The clinic did not answer.", file=sys.stderr)
        return 1
    if accepted.status_code != 202:
        print(f"Guidance refused: {accepted.json()['error']['message']}", file=sys.stderr)
        return 1
    location = base + accepted.headers["Location"]
    print(f"Guidance requested: {location}")

    deadline = time.monotonic() + float(os.environ.get("PMLM_WAIT_SECONDS", "300"))
    while time.monotonic() < deadline:
        guidance = session.get(location, timeout=30)
        if guidance.status_code == 429:
            time.sleep(int(guidance.headers.get("Retry-After", "5")))
            continue
        guidance.raise_for_status()
        body = guidance.json()
        if body["status"] in ("done", "failed"):
            break
        time.sleep(1)
    else:
        print("Still not finished; poll again later.", file=sys.stderr)
        return 1
    if body["status"] == "failed":
        print(f"Guidance failed: {body['error']}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "status": body["status"],
                "model": body["model"],
                "guidance": body["guidance"],
                "citations": [c["title"] for c in body["citations"]],
                "warnings": body["warnings"],
            },
            indent=2,
        )
    )
    print(body["notice"])
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
