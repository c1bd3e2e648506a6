"""An EHR on loopback for the CDS Hooks and SMART tests, following the protocols: a FHIR server answering the
service's prefetch queries with a bearer token, and a SMART authorisation server (configuration, authorise with
PKCE, token). Plus a server that accepts connections and never answers."""

import base64
import hashlib
import json
import secrets
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

from tests.llm_servers import free_port


class FakeEHR:
    """`resources`: relative FHIR query (as the templates render) → JSON answer. `patient`: whom launches open."""

    def __init__(self, *, resources: dict | None = None, access_token: str = "ehr-access-token", patient: str = ""):
        self.resources, self.access_token, self.patient = resources or {}, access_token, patient
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.fhir = f"{self.base}/fhir"
        self.codes: dict[str, dict] = {}
        self.requests: list[str] = []
        ehr = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, status, body):
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                ehr.requests.append(self.path)
                url = urlparse(self.path)
                if url.path == "/fhir/.well-known/smart-configuration":
                    return self._json(
                        200,
                        {
                            "authorization_endpoint": f"{ehr.base}/authorize",
                            "token_endpoint": f"{ehr.base}/token",
                            "code_challenge_methods_supported": ["S256"],
                            "capabilities": ["launch-ehr", "client-public"],
                        },
                    )
                if url.path.startswith("/fhir/"):
                    if self.headers.get("Authorization") != f"Bearer {ehr.access_token}":
                        return self._json(401, {"resourceType": "OperationOutcome"})
                    query = self.path.removeprefix("/fhir/")
                    if query in ehr.resources:
                        return self._json(200, ehr.resources[query])
                    return self._json(404, {"resourceType": "OperationOutcome"})
                return self._json(404, {})

            def do_POST(self):
                ehr.requests.append(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if self.path != "/token":
                    return self._json(404, {})
                grant = ehr.codes.pop(form.get("code", ""), None)
                challenge = (
                    base64.urlsafe_b64encode(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
                    .rstrip(b"=")
                    .decode()
                )
                if (
                    grant is None
                    or form.get("grant_type") != "authorization_code"
                    or grant["redirect_uri"] != form.get("redirect_uri")
                    or grant["client_id"] != form.get("client_id")
                    or grant["challenge"] != challenge
                ):
                    return self._json(400, {"error": "invalid_grant"})
                return self._json(
                    200,
                    {
                        "access_token": secrets.token_urlsafe(16),
                        "token_type": "Bearer",
                        "expires_in": 300,
                        "scope": grant["scope"],
                        "patient": ehr.patient,
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def authorise(self, authorize_url: str) -> str:
        """The clinician approves the launch: the URL the EHR's authorisation server redirects her back to."""
        query = {k: v[0] for k, v in parse_qs(urlparse(authorize_url).query).items()}
        assert query["response_type"] == "code"
        assert query["code_challenge_method"] == "S256"
        assert query["aud"] == self.fhir
        code = secrets.token_urlsafe(12)
        self.codes[code] = {
            "redirect_uri": query["redirect_uri"],
            "client_id": query["client_id"],
            "challenge": query["code_challenge"],
            "scope": query["scope"],
            "launch": query["launch"],
        }
        return f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class SilentServer:
    """Accepts connections and never answers: a FHIR server that hangs."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/fhir"

    def close(self):
        self.socket.close()
