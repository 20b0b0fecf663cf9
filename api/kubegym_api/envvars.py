"""Names of the environment variables the operator sets in a runner pod and the runner reads.

The runner gets its whole configuration from the pod's environment (no file is baked per run),
so these names are part of the contract: the operator's Job builder and the runner import them
from here, and a rename cannot leave one side behind.
"""

#: The serialized runner configuration (JSON of a :mod:`kubegym_api.runnerconfig` model).
CONFIG_ENV = "KUBEGYM_CONFIG"
#: The runner container's CPU request and limit in millicores (downward API ``resourceFieldRef``);
#: the runner sizes its threads from them, since a pod without a CPU limit sees every core.
CPU_REQUEST_ENV = "KUBEGYM_CPU_REQUEST_MILLICORES"
CPU_LIMIT_ENV = "KUBEGYM_CPU_LIMIT_MILLICORES"
#: Path of the operator-minted storage credentials file (JSON of
#: :class:`~kubegym_api.storage.SessionCredentials`) in a runner pod whose storage has no
#: ``secretRef``: a Secret volume the operator refreshes before the credentials expire, which the
#: runner's S3 client re-reads (``kubegym_runner.storage``). Unset when credentials come by reference.
STORAGE_CREDENTIALS_FILE_ENV = "KUBEGYM_STORAGE_CREDENTIALS_FILE"
