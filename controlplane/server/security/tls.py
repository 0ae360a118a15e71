"""Server transport security: TLS, and mTLS when a client CA is given."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc


class TLSConfigError(ValueError):
    """A certificate or key file cannot be used; the message names the file."""


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """PEM files of the server's certificate chain and key; ``client_ca`` turns on mTLS."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate signed by ``client_ca_file``."""
        return self.client_ca_file is not None


def _read_pem(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TLSConfigError(f"{what} {path}: cannot read: {e.strerror or e}") from None
    if b"-----BEGIN " not in data:
        raise TLSConfigError(f"{what} {path}: not a PEM file (no -----BEGIN line)")
    return data


def server_credentials(tls: ServerTLS) -> grpc.ServerCredentials:
    """gRPC server credentials for ``tls`` (client certificates required if mutual)."""
    chain = _read_pem(tls.cert_file, "--tls-cert")
    key = _read_pem(tls.key_file, "--tls-key")
    client_ca = (
        _read_pem(tls.client_ca_file, "--tls-client-ca") if tls.client_ca_file else None
    )
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
