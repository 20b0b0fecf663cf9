"""kubegym operator: reinforcement-learning training, benchmarks and studies as custom resources."""

#: API group and version served by every kubegym custom resource.
GROUP = "kubegym.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
