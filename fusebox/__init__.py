"""Fusebox: a resilience control plane for microservices.

The distribution ``fusebox-resilience`` installs one package with three parts:

* ``fusebox.agent``: the library a service embeds (``from fusebox.agent import
  Agent``); it depends on grpcio and protobuf only;
* ``fusebox.controlplane``: the server, its stores and the ``fusebox`` command
  (the ``server`` extra);
* ``fusebox.v1``: the generated wire code of ``protos/fusebox/v1``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fusebox-resilience")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
