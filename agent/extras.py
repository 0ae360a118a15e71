"""One-line hints for optional dependencies (the distribution's extras).

>>> print(missing_extra("httpx", "integrations", "fusebox.agent.integrations.httpx"))
fusebox.agent.integrations.httpx needs httpx, which is optional: \
pip install 'fusebox-resilience[integrations]'
"""

from __future__ import annotations

DISTRIBUTION = "fusebox-resilience"


def missing_extra(module: str, extra: str, needed_by: str) -> ModuleNotFoundError:
    """The error to raise when ``needed_by`` cannot import ``module`` of ``extra``."""
    error = ModuleNotFoundError(
        f"{needed_by} needs {module}, which is optional: "
        f"pip install '{DISTRIBUTION}[{extra}]'"
    )
    error.name = module
    return error
