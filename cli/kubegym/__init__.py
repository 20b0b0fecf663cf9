"""kubegym's Python client: ``from kubegym import Client`` (see :mod:`kubegym_cli.client`).

A package of its own name so that a notebook imports the client by the project's name; the code
lives beside ``kubectl gym``'s, which it shares (connection, downloads, curves, errors).
"""

from kubegym_cli.client import Client, RunFailedError, manifest
from kubegym_cli.errors import CliError

__all__ = ["CliError", "Client", "RunFailedError", "manifest"]
