"""What ``--server`` (and ``$FUSEBOX_SERVER``) accepts: a gRPC target, checked
before any request is made.

gRPC itself takes almost any text as a target and only fails when it tries to
connect, with an "unreachable" error that hides the typo. The CLI checks the
forms below first (the ones agents and ``fusebox run`` are given too) and
says what is wrong with anything else:

- ``HOST:PORT``, ``[IPV6]:PORT``;
- ``dns:[//AUTHORITY/]HOST:PORT``;
- ``ipv4:ADDR:PORT[,ADDR:PORT...]``, ``ipv6:[ADDR]:PORT[,...]`` (several
  replicas: gRPC picks one that answers);
- ``unix:PATH``, ``unix://ABSOLUTE-PATH``, ``unix-abstract:NAME``.

A name that does not resolve is only known by trying: ``host_problem`` says
so once a request has failed as unreachable.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["ACCEPTED_FORMS", "ServerAddress", "host_problem", "parse_server_address"]

ACCEPTED_FORMS = (
    "HOST:PORT, [IPV6]:PORT, dns:[//AUTHORITY/]HOST:PORT, ipv4:ADDR:PORT[,ADDR:PORT...], "
    "ipv6:[ADDR]:PORT[,...], unix:PATH, unix-abstract:NAME"
)
EXAMPLE_PORT = 50051

_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_TLS_SCHEMES = frozenset({"https", "grpcs"})


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """A checked ``--server`` value.

    ``target`` is the text as given (what gRPC is handed); ``host`` and
    ``port`` are the one name to resolve, for the ``HOST:PORT`` and ``dns:``
    forms (``None`` for address lists and unix sockets).
    """

    target: str
    host: str | None = None
    port: int | None = None

    @property
    def is_host_port(self) -> bool:
        """The plain ``HOST:PORT`` form (what ``fusebox serve --listen`` takes too)."""
        return self.host is not None and not self.target.lower().startswith("dns:")


def parse_server_address(text: str) -> ServerAddress:
    """Check ``text``; ``ValueError`` saying what is wrong and what to write instead.

    >>> parse_server_address("127.0.0.1:50051")
    ServerAddress(target='127.0.0.1:50051', host='127.0.0.1', port=50051)
    >>> parse_server_address("ipv4:10.0.0.7:50051,10.0.0.8:50051").host is None
    True
    >>> parse_server_address("http://127.0.0.1:50051")
    Traceback (most recent call last):
    ...
    ValueError: a URL scheme (http://) is not accepted; write HOST:PORT, e.g. 127.0.0.1:50051
    """
    if not text.strip():
        raise ValueError("empty; write HOST:PORT, e.g. 127.0.0.1:50051")
    if text != text.strip():
        raise ValueError("leading or trailing spaces")
    url = _URL_SCHEME.match(text)
    if url:
        scheme = url.group(1).lower()
        rest = text[url.end():]
        if scheme == "dns":
            authority_end = rest.find("/")
            if authority_end < 0:
                raise ValueError("dns:// needs an authority and a path: dns:///HOST:PORT")
            return ServerAddress(text, *_host_port(rest[authority_end + 1:]))
        if scheme == "unix":
            if not rest.startswith("/"):
                raise ValueError("unix:// needs an absolute path: unix:///run/fusebox.sock")
            return ServerAddress(text)
        raise ValueError(_scheme_message(scheme, text))
    prefix, colon, rest = text.partition(":")
    form = prefix.lower() if colon else ""
    if form == "dns":
        return ServerAddress(text, *_host_port(rest))
    if form == "ipv4":
        for entry in _entries(rest, "ipv4:10.0.0.7:50051,10.0.0.8:50051"):
            host, _ = _host_port(entry)
            _literal(host, ipaddress.IPv4Address, "IPv4")
        return ServerAddress(text)
    if form == "ipv6":
        for entry in _entries(rest, "ipv6:[::1]:50051"):
            if not entry.startswith("["):
                raise ValueError(f"{entry!r}: write an IPv6 address in brackets, [ADDR]:PORT")
            host, _ = _host_port(entry)
            _literal(host, ipaddress.IPv6Address, "IPv6")
        return ServerAddress(text)
    if form in ("unix", "unix-abstract"):
        if not rest:
            raise ValueError(f"{form}: needs a socket path or name, e.g. unix:/run/fusebox.sock")
        return ServerAddress(text)
    host, port = _host_port(text)
    return ServerAddress(text, host, port)


def host_problem(address: str) -> str | None:
    """Why ``address``'s host cannot be reached before any connection is tried, if
    that is why: a name that does not resolve. ``None`` otherwise (it resolves, or
    the address names no host to resolve). Call it after a request failed as
    unreachable: it may take as long as the resolver does."""
    try:
        parsed = parse_server_address(address)
    except ValueError:
        return None
    if parsed.host is None:
        return None
    try:
        socket.getaddrinfo(parsed.host, parsed.port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        return f"the host {parsed.host!r} does not resolve ({e.strerror})"
    except (OSError, UnicodeError):
        return None
    return None


def _entries(text: str, example: str) -> list[str]:
    entries = text.split(",")
    if not all(entries):
        raise ValueError(f"an empty address in the list; write e.g. {example}")
    return entries


def _literal(host: str, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address],
             name: str) -> None:
    try:
        kind(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an {name} address") from None


def _host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, bracket, after = text[1:].partition("]")
        if not bracket:
            raise ValueError(f"{text!r}: no closing bracket; write [ADDR]:PORT, e.g. [::1]:50051")
        if not after:
            raise ValueError(f"no port; write HOST:PORT, e.g. [{host}]:{EXAMPLE_PORT}")
        if not after.startswith(":"):
            raise ValueError(f"{text!r}: expected :PORT after the bracket, e.g. [{host}]:50051")
        port_text = after[1:]
    else:
        colons = text.count(":")
        if colons == 0:
            raise ValueError(f"no port; write HOST:PORT, e.g. {text}:{EXAMPLE_PORT}")
        if colons > 1:
            raise ValueError(
                f"{text!r} has several ':'; an IPv6 address goes in brackets, [ADDR]:PORT, "
                f"e.g. [::1]:{EXAMPLE_PORT}"
            )
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"no host before :{port_text}; write HOST:PORT, e.g. 127.0.0.1:50051")
    if not port_text:
        raise ValueError(f"no port after {host}:; write HOST:PORT, e.g. {host}:{EXAMPLE_PORT}")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


def _scheme_message(scheme: str, text: str) -> str:
    example = f"127.0.0.1:{EXAMPLE_PORT}"
    try:
        parts = urlsplit(text)
        if parts.hostname:
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            example = f"{host}:{parts.port or EXAMPLE_PORT}"
    except ValueError:  # a port that is not a number: keep the generic example
        pass
    tls = " (TLS is --tls-ca, not a scheme)" if scheme in _TLS_SCHEMES else ""
    return f"a URL scheme ({scheme}://) is not accepted; write HOST:PORT, e.g. {example}{tls}"
