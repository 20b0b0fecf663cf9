"""kubegym operator: reinforcement-learning training, benchmarks and studies as custom resources.

The resources' models (and the API group and version) are the contract package :mod:`kubegym_api`.
"""
