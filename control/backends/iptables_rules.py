"""The iptables backend's ruleset as text: pure functions from the projects of a host (and what
`iptables-save` shows) to `iptables-restore --noflush` input. No root, no kernel.

The layout is Docker Engine 28.5.2's bridge driver with the userland proxy disabled
(`dockerd --userland-proxy=false`, i.e. "hairpin" mode), as documented by moby's generated
iptables docs at tag v28.5.2 (integration/network/bridge/iptablesdoc/generated/
usernet-portmap.md, usernet-portmap-noproxy.md, usernet-portmap-lo.md, usernet-internal.md) and
implemented in libnetwork/drivers/bridge/internal/iptabler/{iptabler,network,port,endpoint}.go.

Chain names are fastnet's own, so that a real Docker on the same host is never touched:

    Docker 28 (table: chain)              fastnet
    filter: DOCKER-USER                   FASTNET-USER        (created once, never flushed by fastnet)
    filter: DOCKER-FORWARD                FASTNET-FORWARD
    filter: DOCKER-CT                     FASTNET-CT
    filter: DOCKER-ISOLATION-STAGE-1      FASTNET-ISOLATION-1
    filter: DOCKER-ISOLATION-STAGE-2      FASTNET-ISOLATION-2
    filter: DOCKER-BRIDGE                 FASTNET-BRIDGE
    filter: DOCKER                        FASTNET
    nat:    DOCKER                        FASTNET
    nat:    rules appended to POSTROUTING FASTNET-POSTROUTING (one jump from POSTROUTING)
    raw:    rules appended to PREROUTING  FASTNET-PREROUTING  (one jump from PREROUTING)

Docker adds its NAT and raw rules to the built-in chains one by one; fastnet keeps them in a chain
of its own so that a sync can flush and refill everything it owns in one restore per table, and
teardown can remove exactly what it added. Other deliberate deviations: a published port range is
one rule with a port range (Docker expands a range into one rule per port), and rule order within
a chain follows project, network and container names (Docker's follows the order things were
created in).

Jumps from the built-in chains: filter FORWARD -> FASTNET-USER, FASTNET-FORWARD (at the top, in
that order, like Docker's EnsureJumpRule); nat PREROUTING and OUTPUT -> FASTNET for
`--dst-type LOCAL` (appended; OUTPUT without `! -d 127.0.0.0/8`: hairpin mode); nat POSTROUTING
-> FASTNET-POSTROUTING (at the top: Docker inserts its MASQUERADE rules); raw PREROUTING ->
FASTNET-PREROUTING (appended, as Docker appends its raw rules).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Iterable

from .. import netdrivers
from ..netdrivers import Role
from ..spec import ProjectSpec, link_alias, link_name
from ..state import ProjectState, port_key

USER = "FASTNET-USER"
FORWARD = "FASTNET-FORWARD"
CT = "FASTNET-CT"
ISOLATION_1 = "FASTNET-ISOLATION-1"
ISOLATION_2 = "FASTNET-ISOLATION-2"
BRIDGE = "FASTNET-BRIDGE"
PORTS = "FASTNET"  # filter: published ports' ACCEPTs and per-bridge DROPs; nat: DNAT
POSTROUTING = "FASTNET-POSTROUTING"
PREROUTING = "FASTNET-PREROUTING"

# The order tables are written in: raw drops first, filter (which accepts) last.
TABLES = ("raw", "nat", "filter")

# Every chain fastnet owns, per table, in creation order.
CHAINS: dict[str, tuple[str, ...]] = {
    "raw": (PREROUTING,),
    "nat": (PORTS, POSTROUTING),
    "filter": (USER, FORWARD, CT, ISOLATION_1, ISOLATION_2, BRIDGE, PORTS),
}

# Chains that a sync never flushes (the user's own rules live there, as in DOCKER-USER).
KEPT = {("filter", USER)}


@dataclass(frozen=True)
class Jump:
    chain: str  # built-in chain
    rule: str  # canonical (iptables-save) text after "-A <chain> "
    top: bool  # inserted at the top (else appended)

    @property
    def line(self) -> str:
        return f"-A {self.chain} {self.rule}"


JUMPS: dict[str, tuple[Jump, ...]] = {
    "raw": (Jump("PREROUTING", f"-j {PREROUTING}", top=False),),
    "nat": (
        Jump("PREROUTING", f"-m addrtype --dst-type LOCAL -j {PORTS}", top=False),
        Jump("OUTPUT", f"-m addrtype --dst-type LOCAL -j {PORTS}", top=False),
        Jump("POSTROUTING", f"-j {POSTROUTING}", top=True),
    ),
    "filter": (
        Jump("FORWARD", f"-j {USER}", top=True),
        Jump("FORWARD", f"-j {FORWARD}", top=True),
    ),
}


def bridge_name(project: str, network: str) -> str:
    """The bridge of a network, named like the ports' host ends."""
    return link_name(project, network)


def bridge_alias(project: str, network: str) -> str:
    return link_alias(project, network)


# -- the model: what the rules are made of ------------------------------------------------------
@dataclass(frozen=True)
class Bridge:
    name: str
    subnet: IPv4Network
    internal: bool


@dataclass(frozen=True)
class Endpoint:
    """A container address on a bridge."""

    ip: IPv4Address
    bridge: str


@dataclass(frozen=True)
class Published:
    proto: str
    host_ip: IPv4Address | None
    host_first: int
    host_last: int
    ip: IPv4Address
    port_first: int
    port_last: int
    bridge: str


@dataclass(frozen=True)
class Ruleset:
    bridges: tuple[Bridge, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    published: tuple[Published, ...] = ()


def ruleset_of(states: Iterable[ProjectState]) -> Ruleset:
    """What the rules describe, from every project of the backend on the host. Projects,
    networks and containers are taken in name order (a state file does not keep the config's
    order), so that every run and every project computes the same text. Only ports that exist
    count."""
    bridges, endpoints, published = [], [], []
    for st in sorted(states, key=lambda s: s.name):
        spec: ProjectSpec = st.spec
        for _, net in sorted(spec.networks.items()):
            if netdrivers.of(net).role is not Role.BRIDGED:  # macvlan: the kernel's device, no bridge and no rule
                continue
            bridges.append(Bridge(bridge_name(spec.name, net.name), net.subnet, net.internal))
        for _, c in sorted(spec.containers.items()):
            for i in c.interfaces:
                net = spec.networks.get(i.network)
                if (net is None or port_key(c.name, i.network) not in st.ports or net.internal
                        or netdrivers.of(net).role is not Role.BRIDGED):
                    continue
                endpoints.append(Endpoint(i.ipv4, bridge_name(spec.name, net.name)))
            iface = c.publish_interface
            if iface is None or port_key(c.name, iface.network) not in st.ports:
                continue
            net = spec.networks.get(iface.network)
            if net is None or net.internal:
                continue
            for m in c.publish:
                published.append(
                    Published(
                        m.proto, m.host_ip, m.host_port_first, m.host_port_last,
                        iface.ipv4, m.container_port_first, m.container_port_last,
                        bridge_name(spec.name, net.name),
                    )
                )
    return Ruleset(tuple(bridges), tuple(endpoints), tuple(published))


def _ports(first: int, last: int, sep: str = ":") -> str:
    return str(first) if first == last else f"{first}{sep}{last}"


def _dnat_target(p: Published) -> str:
    if p.port_first == p.port_last:
        return f"{p.ip}:{p.port_first}"
    # A range keeps each port's offset: /BASE maps host port BASE+k to container port first+k.
    return f"{p.ip}:{p.port_first}-{p.port_last}/{p.host_first}"


def chain_rules(rs: Ruleset) -> dict[str, dict[str, list[str]]]:
    """table -> chain -> rules (canonical iptables-save lines) of every chain fastnet owns
    (FASTNET-USER excepted: fastnet creates it and leaves its content alone)."""
    external = [b for b in rs.bridges if not b.internal]
    internal = [b for b in rs.bridges if b.internal]
    t: dict[str, dict[str, list[str]]] = {table: {c: [] for c in CHAINS[table] if (table, c) not in KEPT} for table in TABLES}

    # raw PREROUTING: direct access to a container's address from anywhere but its bridge
    # (endpoint.go filterDirectAccess), remote access to ports published on loopback
    # (port.go filterPortMappedOnLoopback).
    raw = t["raw"][PREROUTING]
    for e in rs.endpoints:
        raw.append(f"-A {PREROUTING} -d {e.ip}/32 ! -i {e.bridge} -j DROP")
    for p in rs.published:
        if p.host_ip is not None and p.host_ip.is_loopback:
            raw.append(f"-A {PREROUTING} -d {p.host_ip}/32 ! -i lo -p {p.proto} -m {p.proto} "
                       f"--dport {_ports(p.host_first, p.host_last)} -j DROP")

    # nat: per-network MASQUERADE (network.go setupNonInternalNetworkRules, hairpin mode), then
    # per-port DNAT and the MASQUERADE of a container reaching its own port (port.go setPerPortNAT).
    post = t["nat"][POSTROUTING]
    for b in external:
        post.append(f"-A {POSTROUTING} -o {b.name} -m addrtype --src-type LOCAL -j MASQUERADE")
        post.append(f"-A {POSTROUTING} -s {b.subnet} ! -o {b.name} -j MASQUERADE")
    dnat = t["nat"][PORTS]
    for p in rs.published:
        dst = f"-d {p.host_ip}/32 " if p.host_ip is not None else ""
        dnat.append(f"-A {PORTS} {dst}-p {p.proto} -m {p.proto} --dport {_ports(p.host_first, p.host_last)} "
                    f"-j DNAT --to-destination {_dnat_target(p)}")
        post.append(f"-A {POSTROUTING} -s {p.ip}/32 -d {p.ip}/32 -p {p.proto} -m {p.proto} "
                    f"--dport {_ports(p.port_first, p.port_last)} -j MASQUERADE")

    # filter (iptabler.go setupIPChains, network.go setupIPTables / setupInternalNetworkRules /
    # setINC / setIcc / setDefaultForwardRule, port.go setPerPortForwarding)
    f = t["filter"]
    f[FORWARD] += [f"-A {FORWARD} -j {CT}", f"-A {FORWARD} -j {ISOLATION_1}", f"-A {FORWARD} -j {BRIDGE}"]
    for b in rs.bridges:
        if b.internal:
            f[FORWARD].append(f"-A {FORWARD} -i {b.name} -o {b.name} -j ACCEPT")  # ICC
        else:
            f[FORWARD].append(f"-A {FORWARD} -i {b.name} -j ACCEPT")  # outgoing, ICC included
            f[CT].append(f"-A {CT} -o {b.name} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
            f[BRIDGE].append(f"-A {BRIDGE} -o {b.name} -j {PORTS}")
            f[ISOLATION_2].append(f"-A {ISOLATION_2} -o {b.name} -j DROP")
    for b in internal:  # inserted at the top of stage 1 by Docker
        f[ISOLATION_1].append(f"-A {ISOLATION_1} ! -s {b.subnet} -o {b.name} -j DROP")
        f[ISOLATION_1].append(f"-A {ISOLATION_1} ! -d {b.subnet} -i {b.name} -j DROP")
    for b in external:
        f[ISOLATION_1].append(f"-A {ISOLATION_1} -i {b.name} ! -o {b.name} -j {ISOLATION_2}")
    for p in rs.published:
        f[PORTS].append(f"-A {PORTS} -d {p.ip}/32 ! -i {p.bridge} -o {p.bridge} -p {p.proto} -m {p.proto} "
                        f"--dport {_ports(p.port_first, p.port_last)} -j ACCEPT")
    for b in external:
        f[PORTS].append(f"-A {PORTS} ! -i {b.name} -o {b.name} -j DROP")
    return t


# -- what the kernel has: iptables-save, parsed -------------------------------------------------
@dataclass(frozen=True)
class Rule:
    chain: str
    text: str  # after "-A <chain> "
    packets: int = 0
    bytes: int = 0

    @property
    def line(self) -> str:
        return f"-A {self.chain} {self.text}"

    @property
    def target(self) -> str | None:
        m = re.search(r"(?:^| )-[jg] (\S+)", self.text)
        return m.group(1) if m else None


@dataclass
class Table:
    chains: dict[str, str] = field(default_factory=dict)  # name -> policy ("-" for user chains)
    rules: list[Rule] = field(default_factory=list)

    def rules_of(self, chain: str) -> list[Rule]:
        return [r for r in self.rules if r.chain == chain]


_COUNTED = re.compile(r"^\[(\d+):(\d+)\] (.*)$")


def parse_save(text: str) -> dict[str, Table]:
    """`iptables-save [-c]` output -> table name -> Table."""
    tables: dict[str, Table] = {}
    cur: Table | None = None
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            cur = tables.setdefault(line[1:], Table())
        elif line == "COMMIT":
            cur = None
        elif cur is not None and line.startswith(":"):
            name, policy = line[1:].split()[:2]
            cur.chains[name] = policy
        elif cur is not None:
            packets = nbytes = 0
            m = _COUNTED.match(line)
            if m:
                packets, nbytes, line = int(m.group(1)), int(m.group(2)), m.group(3)
            if line.startswith("-A "):
                chain, _, rest = line[3:].partition(" ")
                cur.rules.append(Rule(chain, rest, packets, nbytes))
    return tables


def _jump_fix(table: str, current: Table) -> list[str]:
    """Restore lines that make the jumps from the built-in chains exactly JUMPS[table]: nothing
    when they are there in order, else delete fastnet's and add them again (top or end)."""
    ours = set(CHAINS[table])
    out: list[str] = []
    by_chain: dict[str, list[Jump]] = {}
    for j in JUMPS[table]:
        by_chain.setdefault(j.chain, []).append(j)
    for chain, wanted in by_chain.items():
        present = [r for r in current.rules_of(chain) if r.target in ours]
        if [r.text for r in present] == [j.rule for j in wanted]:
            continue
        out += [f"-D {chain} {r.text}" for r in present]
        top = [j for j in wanted if j.top]
        out += [f"-I {chain} {n} {j.rule}" for n, j in enumerate(top, start=1)]
        out += [f"-A {chain} {j.rule}" for j in wanted if not j.top]
    return out


def render_sync(rs: Ruleset, current: dict[str, Table]) -> str:
    """iptables-restore --noflush input that flushes and refills every chain fastnet owns (each
    declared chain is flushed by the restore), creates FASTNET-USER if it is missing, and puts
    the jumps from the built-in chains in place if they are not."""
    wanted = chain_rules(rs)
    out: list[str] = []
    for table in TABLES:
        cur = current.get(table, Table())
        out.append(f"*{table}")
        for chain in CHAINS[table]:
            if (table, chain) in KEPT and chain in cur.chains:
                continue
            out.append(f":{chain} - [0:0]")
        for chain in CHAINS[table]:
            out += wanted[table].get(chain, [])
        out += _jump_fix(table, cur)
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def render_teardown(current: dict[str, Table]) -> str:
    """iptables-restore --noflush input removing every jump to fastnet's chains from the built-in
    chains and then the chains themselves; "" when there is nothing of fastnet's. Tables that
    hold nothing of fastnet's are not named (naming one would create it)."""
    out: list[str] = []
    for table in TABLES:
        cur = current.get(table)
        if cur is None:
            continue
        ours = [c for c in CHAINS[table] if c in cur.chains]
        jumps = [r for r in cur.rules if r.chain not in CHAINS[table] and r.target in CHAINS[table]]
        if not ours and not jumps:
            continue
        out.append(f"*{table}")
        out += [f"-D {r.chain} {r.text}" for r in jumps]
        out += [f":{c} - [0:0]" for c in ours]  # flushes it: no reference between our chains is left
        out += [f"-X {c}" for c in ours]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def counters(current: dict[str, Table]) -> dict[str, dict[str, tuple[int, int]]]:
    """Packets and bytes per table and `<chain>:<verdict>` over fastnet's own rules (jumps
    between fastnet's chains left out): e.g. nat FASTNET:DNAT, raw FASTNET-PREROUTING:DROP."""
    result: dict[str, dict[str, tuple[int, int]]] = {}
    for table in TABLES:
        cur = current.get(table)
        if cur is None or not any(c in cur.chains for c in CHAINS[table]):
            continue
        sums: dict[str, tuple[int, int]] = {}
        for r in cur.rules:
            if r.chain not in CHAINS[table] or r.target in CHAINS[table] or r.target is None:
                continue
            key = f"{r.chain}:{r.target}"
            p, b = sums.get(key, (0, 0))
            sums[key] = (p + r.packets, b + r.bytes)
        result[table] = dict(sorted(sums.items()))
    return result
