"""docker-compose.yml cannot run here (no Docker): check what can be checked."""

from __future__ import annotations

from typing import Any

import yaml

from fusebox.controlplane.cli._parser import build_parser
from tests.support.specs import REPOSITORY

COMPOSE = yaml.safe_load((REPOSITORY / "docker-compose.yml").read_text())


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = COMPOSE["services"][name]
    return found


def test_control_plane_command_is_accepted_by_fusebox_serve() -> None:
    command = service("controlplane")["command"]
    args = build_parser().parse_args(command)
    assert (args.store, args.listen, args.insecure) == ("redis://redis:6379/0", "0.0.0.0:50051",
                                                         True)


def test_redis_keeps_an_append_only_file() -> None:
    assert "--appendonly" in service("redis")["command"]


def test_quickstart_services_run_files_that_exist() -> None:
    names = [n for n in COMPOSE["services"] if n.startswith("checkout")]
    assert len(names) == 3
    for name in [*names, "order-processor"]:
        volumes = service(name).get("volumes", [])
        assert any("examples/quickstart" in v for v in volumes), name
    assert (REPOSITORY / "examples" / "quickstart" / "checkout.py").is_file()
    assert (REPOSITORY / "examples" / "quickstart" / "order_processor.py").is_file()
