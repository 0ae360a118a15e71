"""Who is calling: the one place RPC handlers ask for the caller's name.

Audit records and override records use ``principal(context)``. The
``AuthInterceptor`` (``fusebox.controlplane.server.security.auth``) decides the name before any
handler runs: the token's name from the tokens file, else the verified client
certificate's subject (mTLS), else — on an unauthenticated server — whoever
the CLI says it is (``x-fusebox-user`` metadata, informational only) plus the
peer address.
"""

from __future__ import annotations

from typing import Any

import grpc

from fusebox.controlplane.server.security.auth import claimed_name, current_identity


def principal(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """A readable name for the caller of this RPC."""
    identity = current_identity()
    if identity is not None:
        return identity.name
    # Not behind the interceptor (a handler called directly, e.g. in a unit test).
    return claimed_name(context)
