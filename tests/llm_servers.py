"""OpenAI-compatible HTTP servers on loopback for tests: scripted fakes that follow the protocol
(chat completions, JSON or server-sent events, usage, errors with Retry-After) and record what
they were sent; and the real llama-cpp-python server over the shipped GGUF."""

import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def completion(text: str, model: str = "fake-model", usage: bool = True) -> dict:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    return body


class ScriptedServer:
    """Answers each request with the next scripted reply: ("json", status, body, headers), ("sse", text),
    ("raw", status, bytes), ("sleep", seconds), ("answer", function of the request body -> text),
    ("drip", seconds) or ("drip-headers", seconds). The last reply repeats. Every request body is recorded.

    "drip" answers 200 and then never finishes: a keep-alive every so many seconds (an SSE comment to a
    stream, a blank to JSON), so no read ever times out. "drip-headers" does the same before its headers
    are complete, one header line at a time."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                reply = server.replies[min(len(server.requests) - 1, len(server.replies) - 1)]
                kind = reply[0]
                if kind == "sleep":
                    time.sleep(reply[1])
                    reply = ("json", 200, completion("late"), {})
                    kind = "json"
                if kind in ("drip", "drip-headers"):
                    self._drip(reply[1], streamed=bool(body.get("stream")), in_headers=kind == "drip-headers")
                    return
                if kind == "answer":  # ("answer", function of the request body -> the assistant's text)
                    reply, kind = ("json", 200, completion(reply[1](body)), {}), "json"
                if kind == "json" and reply[1] == 200 and body.get("stream") and "choices" in reply[2]:
                    # As a real server does: a client that asks for a stream gets server-sent events.
                    reply, kind = ("sse", reply[2]["choices"][0]["message"]["content"]), "sse"
                if kind == "json":
                    _, status, payload, headers = reply
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                elif kind == "raw":
                    _, status, data = reply
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                elif kind == "sse":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    words = reply[1].split(" ")
                    for n, word in enumerate(words):
                        token = word + (" " if n < len(words) - 1 else "")
                        event = {
                            "model": "fake-stream",
                            "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}],
                        }
                        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    final = {
                        "model": "fake-stream",
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                        "usage": {
                            "prompt_tokens": 5,
                            "completion_tokens": len(reply[1].split()),
                            "total_tokens": 5 + len(reply[1].split()),
                        },
                    }
                    self.wfile.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())

            def _drip(self, every: float, *, streamed: bool, in_headers: bool):
                """Keep the client waiting, a little at a time, until it hangs up (or five minutes pass)."""
                until = time.monotonic() + 300
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream" if streamed else "application/json")
                    if in_headers:
                        self.flush_headers()
                    else:
                        self.end_headers()
                    n = 0
                    while time.monotonic() < until:
                        time.sleep(every)
                        n += 1
                        line = f"X-Keep-Alive-{n}: 1\r\n" if in_headers else (": keep-alive\n\n" if streamed else " ")
                        self.wfile.write(line.encode())
                        self.wfile.flush()
                except OSError:
                    pass  # the client gave up, as it should
                self.close_connection = True

        class QuietServer(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that gave up (a timeout test) is expected, not an error

        self.port = free_port()
        self.httpd = QuietServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class LlamaServer:
    """llama-cpp-python's own OpenAI-compatible server over a GGUF, on loopback."""

    def __init__(self, model_path: str):
        self.port = free_port()
        # Its model-loading log is long: a file, not a pipe nobody reads, or the server blocks on it.
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                model_path,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--n_ctx",
                "2048",
                "--model_alias",
                "smollm2",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError("llama_cpp.server exited:\n" + self.log.read()[-2000:])
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.5)
        raise RuntimeError("llama_cpp.server did not start in 120 s")

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
