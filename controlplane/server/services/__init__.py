"""The RPC services: each speaks one service of ``fusebox/v1`` and delegates the work.

==========================  ===================================================
``agent_service``           ``AgentService``: the agents' Connect stream (hello,
                            snapshots, ACK/NACK, reports up, breaker updates down)
                            and ``AcquireProbeLease``
``spec_service``            ``SpecService``: validate, version, serve and resolve specs
``breaker_service``         ``BreakerService``: list, get, watch, override, reset
``audit_service``           ``AuditService``: read the audit log
``registry_service``        ``RegistryService``: sidecars' app-id -> address leases
``audit_recorder``          what the handlers write to the audit log after a change
==========================  ===================================================

The engines they delegate to are in ``fusebox.controlplane.server.engines``;
who may call what is decided before any handler runs
(``fusebox.controlplane.server.security``).
"""
