"""Who may call the server, and over what: tokens, roles, identities, TLS.

==========================  ===================================================
``tokens``                  the tokens file: roles, entries, parsing, hashing
                            (the CLI's ``fusebox token`` commands use it too)
``auth``                    what each role may call, and the interceptor that
                            checks every RPC before its handler runs
``identity``                ``principal(context)``: the caller's name for
                            audit and override records
``tls``                     server TLS, and mTLS with a client CA
==========================  ===================================================
"""
