"""The embedded DNS resolver: every container asks 127.0.0.11:53 inside its own namespace.

    zone.py       pure: which names each container may resolve, built from the project states
    responder.py  pure: one query (wire bytes) -> a local answer, or the query to forward
    upstream.py   the host's resolvers from /etc/resolv.conf, asked in order with failover
    server.py     the agent's sockets (one UDP + one TCP per container, made inside its netns);
                  127.0.0.11:53 reaches them through the project's backend (the eBPF socket
                  hooks' fn_resolvers table, or an nftables chain in the container)
    resolvconf.py the per-container resolv.conf that `command:` and `fastnet exec` see
    notify.py     `up`/`down` tell the agent to reload, and wait until it has
"""
RESOLVER_ADDRESS = "127.0.0.11"
RESOLVER_PORT = 53
STATUS_FILE = "dns.json"  # in the keeper's tmpfs: written by server.py, read by notify.py
