"""The ``fusebox budgets`` command handlers (list, get) and their tables and JSON.

A budget is named by its key's text form
(``NAMESPACE/SPEC/KIND/TARGET_KIND/TARGET[/DIRECTION][@CALLER]``, as
``BudgetKey`` prints it), or by its policy's name or its target when that
names exactly one listed budget.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import yaml
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from fusebox.controlplane.cli._breaker_ref import suggestions
from fusebox.controlplane.cli._connection import BudgetServiceClient, ClientSecurity, server_address
from fusebox.controlplane.cli._errors import CommandFailed, ExitCode
from fusebox.controlplane.cli._output import format_duration, human_age, render_json, render_table
from fusebox.v1 import budget_pb2

NONE = "-"


def _client(args: argparse.Namespace) -> BudgetServiceClient:
    return BudgetServiceClient(server_address(args.server), timeout=args.timeout,
                               security=ClientSecurity.from_args(args))


def _namespace_filter(args: argparse.Namespace) -> str:
    return "" if args.all_namespaces else args.namespace


def policy_name(budget: budget_pb2.Budget) -> str:
    which = budget.WhichOneof("policy")
    return getattr(budget, which).name if which else NONE


def kind_text(budget: budget_pb2.Budget) -> str:
    return "retry-budget" if budget.WhichOneof("policy") == "retry_budget" else "rate-limit"


def _rate(value: float) -> str:
    return f"{value:.1f}/s"


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def _seconds(timestamp: Timestamp) -> float:
    return timestamp.seconds + timestamp.nanos / 1e9


def budgets_table(budgets: Sequence[budget_pb2.Budget]) -> str:
    rows = [(b.display_name, policy_name(b), _rate(b.fleet_rate), _rate(b.admitted_per_second),
             _rate(b.refused_per_second), _percent(b.use), str(b.fleet_size), _percent(b.free))
            for b in budgets]
    return render_table(("BUDGET", "POLICY", "FLEET RATE", "ADMITTED", "REFUSED", "USE",
                         "INSTANCES", "FREE"), rows)


def _policy_text(budget: budget_pb2.Budget) -> str:
    if budget.WhichOneof("policy") == "rate_limit":
        p = budget.rate_limit
        period = format_duration(p.period.ToNanoseconds() / 1e9)
        return f"rate limit {p.name}: {p.limit} per {period}, burst {p.burst}"
    if budget.WhichOneof("policy") == "retry_budget":
        r = budget.retry_budget
        return (f"retry budget {r.name}: ratio {r.ratio:g} over "
                f"{format_duration(r.window.ToNanoseconds() / 1e9)}, "
                f"{r.min_retries_per_second:g} retries/s fleet floor")
    return NONE


def instances_table(budget: budget_pb2.Budget, now: float) -> str:
    rows = []
    for i in budget.instances:
        if i.HasField("left_at"):
            state = f"departed, freed in {human_age(_seconds(i.held_until) - now)}"
        else:
            state = "live" if i.reports_usage else "live, no usage reported"
        acked = str(i.acked_generation) if i.acked_generation else "never"
        rows.append((i.instance_id, _percent(i.share), _percent(i.held), str(i.generation),
                     acked, _rate(i.demand_per_second), state))
    return render_table(("INSTANCE", "SHARE", "HELD", "GENERATION", "ACKED", "DEMAND", "STATE"),
                        rows)


def budget_details(budget: budget_pb2.Budget, now: float) -> str:
    """``fusebox budgets get``: one field per line, then the instances."""
    fields = [
        ("Budget", budget.display_name),
        ("Policy", _policy_text(budget)),
        ("Fleet rate", _rate(budget.fleet_rate)),
        ("Admitted", f"{_rate(budget.admitted_per_second)} ({_percent(budget.use)} of the "
                     "fleet rate, last 10 s)"),
        ("Refused", _rate(budget.refused_per_second)),
        ("Instances", str(budget.fleet_size)),
        ("Free", _percent(budget.free)),
        ("Generation", str(budget.generation)),
        ("Lease", format_duration(budget.lease.ToNanoseconds() / 1e9)),
        ("Refreshed", f"{human_age(now - _seconds(budget.updated_at))} ago"),
    ]
    if budget.WhichOneof("policy") == "retry_budget":
        fields.insert(5, ("First attempts", _rate(budget.first_attempts_per_second)))
    width = max(len(label) for label, _ in fields) + 2
    lines = [f"{label + ':':<{width}}{value}" for label, value in fields]
    lines.append("")
    lines.append("Shares:" if budget.instances else "Shares: none")
    if budget.instances:
        lines.append(instances_table(budget, now))
    return "\n".join(lines)


def budget_to_json(budget: budget_pb2.Budget) -> dict[str, Any]:
    return MessageToDict(budget, always_print_fields_with_no_presence=True)


# ---- handlers -----------------------------------------------------------------------


def list_budgets(args: argparse.Namespace) -> int:
    with _client(args) as client:
        listed = list(client.list(budget_pb2.ListBudgetsRequest(
            namespace=_namespace_filter(args))).budgets)
    if args.output == "json":
        print(render_json({"budgets": [budget_to_json(b) for b in listed]}))
        return ExitCode.OK
    if listed:
        print(budgets_table(listed))
    else:
        where = "any namespace" if args.all_namespaces else f'namespace "{args.namespace}"'
        print(f"no fleet budgets found in {where}", file=sys.stderr)
    return ExitCode.OK


def the_one_budget(name: str, budgets: Sequence[budget_pb2.Budget]) -> budget_pb2.Budget:
    """The listed budget ``name`` names (its key, its policy's name or its target);
    ``CommandFailed`` (exit 1) for none or several."""
    exact = [b for b in budgets if b.display_name == name]
    found = exact or [b for b in budgets if name in (policy_name(b), b.key.target)]
    if not found:
        raise CommandFailed(f'no fleet budget named "{name}"'
                            f"{suggestions(name, [b.display_name for b in budgets])}"
                            "; fusebox budgets list shows them")
    if len(found) > 1:
        raise CommandFailed(f'"{name}" matches {len(found)} fleet budgets; name one by its key',
                            details=[f"  {b.display_name}" for b in found])
    return found[0]


def get_budget(args: argparse.Namespace) -> int:
    with _client(args) as client:
        listed = client.list(budget_pb2.ListBudgetsRequest(
            namespace="" if "/" in args.name else args.namespace or "")).budgets
        key = the_one_budget(args.name, listed).key
        # GetBudget even after a list: the list may be of another moment.
        budget = client.get(budget_pb2.GetBudgetRequest(key=key)).budget
    if args.output == "json":
        print(render_json(budget_to_json(budget)))
    elif args.output == "yaml":
        print(yaml.safe_dump(budget_to_json(budget), sort_keys=True).rstrip("\n"))
    else:
        print(budget_details(budget, now=time.time()))
    return ExitCode.OK
