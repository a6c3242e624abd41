"""A local fake of the parts of Google Cloud a run VM touches, for the GCE run launcher tests.

Compute Engine has no emulator, so this fake speaks just enough of the real REST protocols for the
real clients to work against it:

* the Compute instances API (``POST/GET/DELETE /compute/v1/projects/P/zones/Z/instances[/NAME]``),
  used by ``google-cloud-compute``'s ``InstancesClient`` in the launcher and by ``curl`` in the
  VM startup script (self-delete);
* one metadata server per "booted" VM (``/computeMetadata/v1/...``, ``Metadata-Flavor: Google``
  required, as on GCE), serving the metadata the launcher put on that instance;
* Secret Manager's ``versions/V:access``.

A "VM" here is the startup script run as a local process. Deleting an instance stops that process
the way a guest shutdown does (SIGTERM to its process group); ``preempt`` kills it with no warning
(SIGKILL), like a host failure, and removes the instance.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FAKE_TOKEN = "fake-access-token"
NUMERIC_PROJECT = "123456789012"
_INSTANCE_PATH = re.compile(r"^/compute/v1/projects/([^/]+)/zones/([^/]+)/instances(?:/([^/?]+))?$")
_SECRET_PATH = re.compile(r"^/v1/(projects/[^/]+/secrets/[^/]+/versions/[^/:]+):access$")


@dataclass
class FakeInstance:
    project: str
    zone: str
    body: dict[str, Any]
    status: str = "RUNNING"
    process: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return self.body["name"]

    @property
    def metadata(self) -> dict[str, str]:
        return {item["key"]: item["value"] for item in self.body.get("metadata", {}).get("items", [])}


@dataclass
class Requests:
    inserts: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    secret_reads: list[str] = field(default_factory=list)


def _error(code: int, message: str) -> dict[str, Any]:
    return {
        "error": {"code": code, "message": message, "errors": [{"message": message, "reason": "notFound"}]}
    }


class FakeGce:
    """Instances API + Secret Manager on one port; metadata servers on their own ports."""

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        self.instances: dict[tuple[str, str, str], FakeInstance] = {}
        self.requests = Requests()
        self.secrets = dict(secrets or {})
        self._lock = threading.Lock()
        self._ops = 0
        self._servers: list[ThreadingHTTPServer] = []
        self.endpoint = self._serve(self._api_handler())

    # --- lifecycle --------------------------------------------------------------------------------
    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    def close(self) -> None:
        for inst in list(self.instances.values()):
            self._stop_process(inst, signal.SIGKILL)
        for server in self._servers:
            server.shutdown()
            server.server_close()

    # --- test controls ----------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every instance (stopping its process) and every recorded request."""
        with self._lock:
            for inst in self.instances.values():
                self._stop_process(inst, signal.SIGKILL)
            self.instances.clear()
            self.requests = Requests()

    def only_instance(self) -> FakeInstance:
        assert len(self.instances) == 1, f"expected one VM, have {sorted(self.instances)}"
        return next(iter(self.instances.values()))

    def set_status(self, name: str, status: str) -> None:
        self._find(name).status = status

    def boot(self, name: str, env: Mapping[str, str], log_path: Path) -> subprocess.Popen:
        """Run the instance's startup-script as the guest agent would, with its own metadata server."""
        inst = self._find(name)
        metadata_url = self._serve(self._metadata_handler(inst))
        script = log_path.with_suffix(".startup.sh")
        script.write_text(inst.metadata["startup-script"])
        with open(log_path, "wb") as log:
            inst.process = subprocess.Popen(
                ["bash", str(script)],
                env={**env, "GCE_METADATA_HOST": metadata_url.removeprefix("http://")},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return inst.process

    def preempt(self, name: str) -> None:
        """The host dies: the process gets SIGKILL and the instance disappears (spot VMs are deleted)."""
        inst = self._find(name)
        self._stop_process(inst, signal.SIGKILL)
        with self._lock:
            self.instances.pop((inst.project, inst.zone, inst.name))

    def _find(self, name: str) -> FakeInstance:
        for inst in self.instances.values():
            if inst.name == name:
                return inst
        raise KeyError(name)

    @staticmethod
    def _stop_process(inst: FakeInstance, sig: int) -> None:
        if inst.process is not None and inst.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(inst.process.pid, sig)

    def _operation(self, kind: str, project: str, zone: str, target: str) -> dict[str, Any]:
        with self._lock:
            self._ops += 1
            op = self._ops
        zone_url = f"https://www.googleapis.com/compute/v1/projects/{project}/zones/{zone}"
        return {
            "kind": "compute#operation",
            "id": str(op),
            "name": f"operation-{op}",
            "operationType": kind,
            "status": "DONE",
            "progress": 100,
            "zone": zone_url,
            "targetLink": f"{zone_url}/instances/{target}",
        }

    # --- HTTP handlers ----------------------------------------------------------------------------
    def _api_handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(_JsonHandler):
            def do_POST(self) -> None:
                m = _INSTANCE_PATH.match(self.path.split("?")[0])
                if not m or m.group(3):
                    return self.send_json(404, _error(404, f"no such API path {self.path}"))
                project, zone = m.group(1), m.group(2)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with fake._lock:
                    fake.requests.inserts.append(body)
                    key = (project, zone, body.get("name", ""))
                    if key in fake.instances:
                        return self.send_json(409, _error(409, f"The resource '{key[2]}' already exists"))
                    fake.instances[key] = FakeInstance(project, zone, body)
                self.send_json(200, fake._operation("insert", project, zone, key[2]))

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                secret = _SECRET_PATH.match(path)
                if secret:
                    if self.headers.get("Authorization") != f"Bearer {FAKE_TOKEN}":
                        return self.send_json(401, _error(401, "missing or wrong bearer token"))
                    resource = secret.group(1)
                    fake.requests.secret_reads.append(resource)
                    if resource not in fake.secrets:
                        return self.send_json(404, _error(404, f"Secret [{resource}] not found"))
                    data = base64.b64encode(fake.secrets[resource].encode()).decode()
                    return self.send_json(200, {"name": resource, "payload": {"data": data}})
                m = _INSTANCE_PATH.match(path)
                if not m or not m.group(3):
                    return self.send_json(404, _error(404, f"no such API path {self.path}"))
                inst = fake.instances.get((m.group(1), m.group(2), m.group(3)))
                if inst is None:
                    return self.send_json(404, _error(404, f"The resource '{m.group(3)}' was not found"))
                self.send_json(200, {**inst.body, "status": inst.status, "kind": "compute#instance"})

            def do_DELETE(self) -> None:
                m = _INSTANCE_PATH.match(self.path.split("?")[0])
                if not m or not m.group(3):
                    return self.send_json(404, _error(404, f"no such API path {self.path}"))
                with fake._lock:
                    fake.requests.deletes.append(m.group(3))
                    inst = fake.instances.pop((m.group(1), m.group(2), m.group(3)), None)
                if inst is None:
                    return self.send_json(404, _error(404, f"The resource '{m.group(3)}' was not found"))
                self.send_json(200, fake._operation("delete", m.group(1), m.group(2), m.group(3)))
                # Then the guest shuts down: systemd sends SIGTERM to the startup script and its children.
                fake._stop_process(inst, signal.SIGTERM)

        return Handler

    def _metadata_handler(self, inst: FakeInstance) -> type[BaseHTTPRequestHandler]:
        class Handler(_JsonHandler):
            def do_GET(self) -> None:
                if self.headers.get("Metadata-Flavor") != "Google":
                    return self.send_text(403, "Missing Metadata-Flavor:Google header.")
                path = self.path.split("?")[0].removeprefix("/computeMetadata/v1/")
                if path == "instance/name":
                    return self.send_text(200, inst.name)
                if path == "instance/zone":
                    return self.send_text(200, f"projects/{NUMERIC_PROJECT}/zones/{inst.zone}")
                if path == "project/project-id":
                    return self.send_text(200, inst.project)
                if path == "instance/service-accounts/default/token":
                    return self.send_json(
                        200, {"access_token": FAKE_TOKEN, "expires_in": 3599, "token_type": "Bearer"}
                    )
                if path.startswith("instance/attributes/"):
                    key = path.removeprefix("instance/attributes/")
                    if key in inst.metadata:
                        return self.send_text(200, inst.metadata[key])
                self.send_text(404, "not found")

        return Handler


class _JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def send_json(self, code: int, payload: Any) -> None:
        self._send(code, json.dumps(payload).encode(), "application/json")

    def send_text(self, code: int, text: str) -> None:
        self._send(code, text.encode(), "application/text")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
