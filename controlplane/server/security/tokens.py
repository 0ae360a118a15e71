"""The tokens file: who a bearer token belongs to and which role it has.

What the server's ``AuthInterceptor`` (``fusebox.controlplane.server.security.auth``)
checks every call against, and what ``fusebox token hash`` / ``fusebox token
create`` write entries of. The file (YAML or JSON) holds only SHA-256
digests of the tokens::

    tokens:
      - name: ci-deployer          # shown in logs, override records and audit
        sha256: 9f86d08...         # `fusebox token hash` / `fusebox token create`
        role: admin                # admin | operator | viewer | agent
      - name: checkout-agents
        sha256: 2c26b46...
        role: agent
        apps: [checkout]           # agent role only: the app-ids it may connect as
        namespace: default         # agent role only (default: default)
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from fusebox.controlplane.server.logs import log_event
from fusebox.controlplane.spec.model import DEFAULT_NAMESPACE

__all__ = [
    "Role",
    "TokenEntry",
    "TokenFileError",
    "TokenRegistry",
    "Tokens",
    "entry_yaml",
    "hash_token",
    "new_token",
    "parse_tokens",
]

log = logging.getLogger("fusebox.server.auth")


class Role(enum.StrEnum):
    """A token's role (what each may call: ``ROLE_METHODS`` of the auth interceptor)."""

    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    AGENT = "agent"


_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_ENTRY_FIELDS = frozenset({"name", "sha256", "role", "apps", "namespace"})


class TokenFileError(ValueError):
    """The tokens file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One line of the tokens file: who a token belongs to and what it may do."""

    name: str
    sha256: str  # hex digest of the token; the token itself is never stored
    role: Role
    apps: frozenset[str] = frozenset()  # agent role: the app-ids it may connect as
    namespace: str = DEFAULT_NAMESPACE  # agent role: the namespace of those apps


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token, as the tokens file stores it."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return "fbx_" + secrets.token_urlsafe(32)


def entry_yaml(entry: TokenEntry) -> str:
    """``entry`` as a list item to paste under ``tokens:`` in the tokens file."""
    lines = [f"  - name: {entry.name}", f"    sha256: {entry.sha256}", f"    role: {entry.role}"]
    if entry.role is Role.AGENT:
        lines.append(f"    apps: [{', '.join(sorted(entry.apps))}]")
        lines.append(f"    namespace: {entry.namespace}")
    return "\n".join(lines)


class Tokens:
    """The entries of one tokens file, looked up by token in constant time."""

    def __init__(self, entries: Iterable[TokenEntry]) -> None:
        self.entries = tuple(entries)

    def authenticate(self, token: str) -> TokenEntry | None:
        """The entry whose digest matches ``token``, or None.

        Every digest is compared (``hmac.compare_digest``) even after a match, so
        the time taken does not tell which entry, or how much of one, matched.
        """
        digest = hash_token(token)
        found = None
        for entry in self.entries:
            if hmac.compare_digest(entry.sha256, digest):
                found = entry
        return found


def parse_tokens(text: str, source: str = "<tokens>") -> Tokens:
    """Parse a tokens file (YAML, or JSON which is YAML too); ``TokenFileError`` if invalid."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise TokenFileError(f"{source}: not valid YAML/JSON: {e}") from None
    if isinstance(document, dict) and set(document) == {"tokens"}:
        document = document["tokens"]
    if document is None:
        document = []
    if not isinstance(document, list):
        raise TokenFileError(f"{source}: expected `tokens:` with a list of entries")
    entries = [_parse_entry(item, f"{source}: tokens[{i}]") for i, item in enumerate(document)]
    seen: dict[str, str] = {}
    for entry in entries:
        for key, what in ((entry.name, "name"), (entry.sha256, "sha256")):
            if f"{what}:{key}" in seen:
                raise TokenFileError(
                    f"{source}: entry {entry.name!r} repeats the {what} of entry "
                    f"{seen[f'{what}:{key}']!r}"
                )
            seen[f"{what}:{key}"] = entry.name
    return Tokens(entries)


def _parse_entry(item: object, where: str) -> TokenEntry:
    if not isinstance(item, dict):
        raise TokenFileError(f"{where}: expected a mapping with name, sha256 and role")
    unknown = sorted(set(map(str, item)) - _ENTRY_FIELDS)
    if unknown:
        raise TokenFileError(f"{where}: unknown field(s) {', '.join(unknown)} "
                             f"(accepted: {', '.join(sorted(_ENTRY_FIELDS))})")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise TokenFileError(f"{where}.name: required, a non-empty string")
    digest = item.get("sha256")
    if not isinstance(digest, str) or not _HEX_DIGEST.fullmatch(digest.lower()):
        raise TokenFileError(f"{where}.sha256: expected 64 hex digits (`fusebox token hash`)")
    try:
        role = Role(str(item.get("role")))
    except ValueError:
        raise TokenFileError(
            f"{where}.role: got {item.get('role')!r}, expected one of "
            f"{', '.join(r.value for r in Role)}"
        ) from None
    apps = item.get("apps", [])
    if not isinstance(apps, list) or not all(isinstance(a, str) and a for a in apps):
        raise TokenFileError(f"{where}.apps: expected a list of app-ids")
    if role is Role.AGENT and not apps:
        raise TokenFileError(f"{where}.apps: an agent token needs at least one app-id")
    if role is not Role.AGENT and apps:
        raise TokenFileError(f"{where}.apps: only agent tokens are bound to apps")
    namespace = item.get("namespace", DEFAULT_NAMESPACE)
    if not isinstance(namespace, str) or not namespace:
        raise TokenFileError(f"{where}.namespace: expected a namespace name")
    return TokenEntry(name.strip(), digest.lower(), role, frozenset(apps), namespace)


class TokenRegistry:
    """The tokens file in force; ``reload()`` (on SIGHUP) swaps it atomically.

    A file that cannot be read or parsed is logged and the previous tokens stay.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.current = self._read()  # at start a broken file is fatal: raise

    def _read(self) -> Tokens:
        try:
            text = self.path.read_text()
        except OSError as e:
            raise TokenFileError(f"{self.path}: cannot read the tokens file: {e}") from None
        return parse_tokens(text, str(self.path))

    def reload(self) -> bool:
        """Read the file again; True if the new tokens are in force."""
        try:
            tokens = self._read()
        except TokenFileError as e:
            log_event(log, logging.ERROR, "tokens file not reloaded, keeping the previous tokens",
                      error=str(e))
            return False
        self.current = tokens
        log_event(log, logging.INFO, "tokens file reloaded", path=str(self.path),
                  tokens=len(tokens.entries))
        return True
