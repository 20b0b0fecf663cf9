"""Pure functions from custom resources and observed cluster state to manifests and status."""
