"""The operator's console (`fusebox serve --console`): a live web view of the fleet.

The page (``static/``) calls the server's own RPCs over a JSON mapping of them
and follows breakers over server-sent events; docs/console.md has the contract.
"""
