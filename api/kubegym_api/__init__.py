"""kubegym's API contract: the models of the custom resources and of the runner's configuration.

The operator and the runner both import this package and nothing of each other, so a field
means one thing in the CRD, in the Job the operator renders and in the runner that reads it.
It depends on pydantic and PyYAML only (no kopf, no torch): both images install it.

- :mod:`kubegym_api.base`: the wire conventions every model follows, and small shared types.
- :mod:`kubegym_api.validation`: CEL rules and Kubernetes name syntax for apply-time checks.
- :mod:`kubegym_api.workload`, :mod:`kubegym_api.status`: pod compute/placement/retries, and
  phase/conditions, shared by the three kinds.
- :mod:`kubegym_api.environment`, :mod:`kubegym_api.storage`: what to run on and where
  artifacts go.
- :mod:`kubegym_api.trainingrun`, :mod:`kubegym_api.benchmark`, :mod:`kubegym_api.experiment`:
  spec and status of each kind.
- :mod:`kubegym_api.runnerconfig`, :mod:`kubegym_api.envvars`, :mod:`kubegym_api.exitcodes`,
  :mod:`kubegym_api.finalreport`: what the operator hands the runner and what it gets back.
- :mod:`kubegym_api.hyperparameters`: which hyperparameters each algorithm takes.
- :mod:`kubegym_api.crd`, :mod:`kubegym_api.crdgen`: the CRDs generated from the models.
"""

#: API group and version served by every kubegym custom resource.
GROUP = "kubegym.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
