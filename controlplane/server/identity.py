"""Who is calling: the one place RPC handlers ask for the caller's name.

Audit records and override records use ``principal(context)``. Until
authentication is configured, the caller is whoever the CLI says it is
(``x-fusebox-user`` metadata, informational only) plus the peer address.
"""

from __future__ import annotations

from typing import Any

import grpc


def principal(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """A readable name for the caller of this RPC."""
    metadata = dict(context.invocation_metadata() or ())
    user = str(metadata.get("x-fusebox-user", "")).strip()[:200]
    peer = str(context.peer())
    return f"{user} via {peer}" if user else peer
