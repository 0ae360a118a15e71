"""The policy and breaker engines: what a replica keeps and decides between the RPCs.

==========================  ===================================================
``policy_hub``              follows the spec store, resolves each connected
                            app's policies, offers new snapshots to its sessions
``sessions``                one connected agent stream and its coalesced outbox
``breaker_hub``             ingest reports, aggregate them into the breaker
                            store, propagate transitions, grant probe leases
``breaker_policy``          which breaker policy an agent holds for a key
``report_limits``           report rate and breakers-per-target bounds
``instance_registry``       sidecars' app instances (in memory or in Redis)
==========================  ===================================================
"""
