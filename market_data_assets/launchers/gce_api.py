"""The three Compute Engine calls the run launcher makes, behind a small interface.

``GceRunLauncher`` only ever inserts, reads and deletes instances. Keeping those calls behind
``ComputeApi`` lets tests satisfy it with a local fake of the instances API (Compute Engine has no
emulator) while production uses ``GoogleComputeApi`` on ``google-cloud-compute``. The real client
can also be pointed at any endpoint speaking the Compute REST API (``api_endpoint``), which is how the
tests exercise this very class against their local fake.
"""

from __future__ import annotations

from typing import Protocol

from google.cloud import compute_v1

# How long launch_run waits for the insert operation: errors such as an unknown image or an
# exhausted quota surface there, and should fail the launch rather than leave a QUEUED-looking run.
INSERT_TIMEOUT_SECONDS = 300.0


class ComputeApi(Protocol):
    """Instances API subset: insert, get (None when absent) and delete (False when absent)."""

    def insert_instance(self, project: str, zone: str, instance: compute_v1.Instance) -> None: ...

    def get_instance(self, project: str, zone: str, name: str) -> compute_v1.Instance | None: ...

    def delete_instance(self, project: str, zone: str, name: str) -> bool: ...


class GoogleComputeApi:
    """``ComputeApi`` on ``compute_v1.InstancesClient``.

    Credentials come from Application Default Credentials (the daemon VM's service account). With
    ``api_endpoint`` set (an emulator or fake), anonymous credentials are used, as for the storage
    emulators.
    """

    def __init__(self, api_endpoint: str | None = None, insert_timeout: float = INSERT_TIMEOUT_SECONDS):
        if api_endpoint:
            from google.api_core.client_options import ClientOptions
            from google.auth.credentials import AnonymousCredentials

            self._client = compute_v1.InstancesClient(
                credentials=AnonymousCredentials(),
                client_options=ClientOptions(api_endpoint=api_endpoint),
            )
        else:
            self._client = compute_v1.InstancesClient()
        self._insert_timeout = insert_timeout

    def insert_instance(self, project: str, zone: str, instance: compute_v1.Instance) -> None:
        operation = self._client.insert(project=project, zone=zone, instance_resource=instance)
        operation.result(timeout=self._insert_timeout)

    def get_instance(self, project: str, zone: str, name: str) -> compute_v1.Instance | None:
        from google.api_core.exceptions import NotFound

        try:
            return self._client.get(project=project, zone=zone, instance=name)
        except NotFound:
            return None

    def delete_instance(self, project: str, zone: str, name: str) -> bool:
        """Request deletion without waiting for it (a VM takes a minute to go; callers must not block)."""
        from google.api_core.exceptions import NotFound

        try:
            self._client.delete(project=project, zone=zone, instance=name)
        except NotFound:
            return False
        return True
