"""The kubegym runner: the program inside the runner image (``kubegym-runner train``).

Every module here may import the RL stack (torch, stable-baselines3, boto3); the typed
configuration the operator hands over is the contract package :mod:`kubegym_api`, which both
images install.
"""
