"""TLS for a connection to the control plane: what ``Agent(tls_ca=..., tls_cert=...,
tls_key=...)`` builds, and what other clients of the control plane (the sidecar) use."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

#: A PEM file's path, or its contents.
PemSource = str | os.PathLike[str] | bytes


def _pem(source: PemSource | None) -> bytes | None:
    if source is None or isinstance(source, bytes):
        return source
    return Path(source).read_bytes()


def channel_credentials(
    tls_ca: PemSource | None = None,
    tls_cert: PemSource | None = None,
    tls_key: PemSource | None = None,
) -> grpc.ChannelCredentials:
    """TLS credentials for the link: ``tls_ca`` verifies the server (None: system roots),
    ``tls_cert`` + ``tls_key`` are the client certificate for mTLS.

    Each is a PEM file path or the PEM bytes themselves.
    """
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together: give both for mTLS, or neither")
    return grpc.ssl_channel_credentials(
        root_certificates=_pem(tls_ca), private_key=_pem(tls_key),
        certificate_chain=_pem(tls_cert),
    )
