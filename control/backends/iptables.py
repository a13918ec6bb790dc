"""The Docker-style reference backend: a Linux bridge per network and iptables rules.

It builds the same networks as the eBPF backend the way Docker Engine 28.5.2's bridge driver
does with the userland proxy disabled, so the conformance suite can hold both to one standard
and `fastnet bench` can race them:

- each network is a bridge (`<project[:7]>-<7 hex>`, alias `fastnet:<project>/<network>`) with
  the gateway's MAC and the gateway address with the subnet's prefix, up; STP off and the other
  bridge settings at the kernel's defaults, as Docker creates them; route_localnet=1 (Docker's
  setupLoopbackAddressesRouting without the userland proxy); IPv6 off, like fastnet's ports;
- each port's host end is enslaved to its bridge with hairpin mode on (Docker's CreateEndpoint
  without the userland proxy), so a container can reach its own published port;
- the ruleset (control/backends/iptables_rules.py, which maps Docker's chains to fastnet's) is
  rendered from every iptables-backend project on the host and installed with one
  `iptables-restore --noflush` (one atomic commit per table) that flushes and refills fastnet's
  chains; `teardown` removes exactly the jumps and chains fastnet added;
- on the host: net.ipv4.ip_forward=1 (and, as Docker does when it has to turn forwarding on, the
  filter FORWARD policy DROP) and net.bridge.bridge-nf-call-iptables=1. What was changed is
  recorded in `<host dir>/iptables.json` and put back by `teardown`, together with the
  nf_tables tables that iptables-nft had to create.

iptables is whatever `iptables-restore`/`iptables-save` the system's alternatives select
(Debian 12: iptables-nft). Sysctls are per network namespace, so all of this is per fastnet host.

The connected route of each subnet is added by fastnet rather than by the kernel (the address
carries IFA_F_NOPREFIXROUTE): the same route (scope link, src gateway) tagged with fastnet's
route protocol and the project's metric, which `up`'s preflight recognises as the project's own.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import subprocess
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .. import procs, sandbox
from .. import state as statestore
from ..dns import RESOLVER_ADDRESS, RESOLVER_PORT
from ..host import Host
from ..links import RTPROT_FASTNET, route_metric
from ..spec import InterfaceSpec, NetworkSpec, ProjectSpec
from ..state import ProjectState
from . import iptables_rules as rules
from ...datapath.errors import FastnetError

IFA_F_NOPREFIXROUTE = 0x200
SCOPE_LINK = 253
PROC_SYS = Path("/proc/sys")
IP_FORWARD = "net/ipv4/ip_forward"
BRIDGE_NF_CALL_IPTABLES = "net/bridge/bridge-nf-call-iptables"
TIMEOUT = 60


class IptablesError(FastnetError):
    pass


def _sysctl_path(key: str) -> Path:
    """A sysctl by its /proc/sys path ("net/ipv4/conf/<dev>/x": device names may hold dots)."""
    return PROC_SYS / key


def read_sysctl(key: str) -> str | None:
    try:
        return _sysctl_path(key).read_text().strip()
    except OSError:
        return None


def write_sysctl(key: str, value: str) -> None:
    sandbox.write_sysctl(None, key, value)


def _run(*argv: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cp = procs.run(argv, input=input, capture_output=True, text=True, timeout=TIMEOUT)
    if check and cp.returncode != 0:
        lines = (cp.stderr or cp.stdout).strip().splitlines()
        raise IptablesError(f"{' '.join(argv[:2])} failed (exit {cp.returncode}): {lines[0] if lines else ''}")
    return cp


def iptables_variant() -> str:
    """"nf_tables" or "legacy": what the selected iptables binary drives."""
    out = _run("iptables", "-V", check=False).stdout
    return "nf_tables" if "nf_tables" in out else "legacy"


def save() -> dict[str, rules.Table]:
    return rules.parse_save(_run("iptables-save", "-c").stdout)


# In the host directory: when it exists (`fastnet bench` makes it), the duration of each
# iptables-restore in ns is appended, a line each.
RESTORE_TIMES = "iptables-restore.ns"


def restore(text: str, times: Path | None = None) -> None:
    if not text:
        return
    started = time.perf_counter_ns()
    _run("iptables-restore", "-w", "--noflush", input=text)
    if times is not None and times.exists():
        with open(times, "a") as f:
            f.write(f"{time.perf_counter_ns() - started}\n")


RESOLVER_TABLE = "fastnet_dns"  # the nftables table in each container's namespace


def resolver_ruleset(udp_port: int, tcp_port: int) -> str:
    a, p = RESOLVER_ADDRESS, RESOLVER_PORT
    # add+delete first: replaces a table left by an earlier resolver in one transaction
    return f"""add table ip {RESOLVER_TABLE}
delete table ip {RESOLVER_TABLE}
table ip {RESOLVER_TABLE} {{
  chain resolver_port {{
    type filter hook output priority raw; policy accept;
    oif != "lo" accept
    ip daddr {a} udp dport {p} udp dport set {udp_port}
    ip daddr {a} tcp dport {p} tcp dport set {tcp_port}
    ip saddr {a} udp sport {udp_port} udp sport set {p}
    ip saddr {a} tcp sport {tcp_port} tcp sport set {p}
  }}
}}
"""


class IptablesBackend:
    name = "iptables"
    copies_host_facts = False  # MASQUERADE and the kernel's routing read them when they need them

    def __init__(self, host: Host, project: str):
        self.host = host
        self.project = project
        self.record_file = host.dir / "iptables.json"  # what fastnet changed on the host

    # -- networks and ports ----------------------------------------------------------------------
    def host_mac(self, network: NetworkSpec) -> str | None:
        # The kernel picks a random MAC for the host end, as for Docker's veths: nothing but the
        # bridge's forwarding database ever sees it (the gateway MAC is the bridge's).
        return None

    def prepare(self, spec: ProjectSpec) -> None:
        missing = [tool for tool in ("iptables", "iptables-save", "iptables-restore") if procs.which(tool) is None]
        if missing:
            raise IptablesError(f"the iptables backend needs {', '.join(missing)} (install the iptables package)")

    def bridge_name(self, network: str) -> str:
        return rules.bridge_name(self.project, network)

    def _route(self, network: NetworkSpec, index: int) -> dict:
        return {
            "dst": str(network.subnet),
            "oif": index,
            "scope": SCOPE_LINK,
            "prefsrc": str(network.gateway),
            "proto": RTPROT_FASTNET,
            "priority": route_metric(self.project),
        }

    def _bridge_index(self, ipr: IPRoute, network: str) -> int | None:
        """Index of the network's bridge; None if there is none. A link of that name that is not
        fastnet's bridge for this network is an error."""
        name = self.bridge_name(network)
        found = ipr.link_lookup(ifname=name)
        if not found:
            return None
        link = ipr.get_links(found[0])[0]
        alias = link.get_attr("IFLA_IFALIAS") or ""
        info = link.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info else None
        if alias != rules.bridge_alias(self.project, network) or kind != "bridge":
            raise IptablesError(f"interface {name} (for network {network}) already exists on this host and is not fastnet's")
        return found[0]

    def add_network(self, ipr: IPRoute, network: NetworkSpec) -> None:
        name = self.bridge_name(network.name)
        index = self._bridge_index(ipr, network.name)
        if index is not None:
            self._configure_bridge(ipr, network, name, index)
            return
        # A fixed MAC (Docker sets a random one) keeps the bridge's address when ports join;
        # it is the gateway MAC of the eBPF backend, so containers see the same gateway.
        ipr.link("add", ifname=name, kind="bridge", address=network.gateway_mac, br_stp_state=0)
        index = ipr.link_lookup(ifname=name)[0]
        try:
            # the kernel ignores IFLA_IFALIAS when creating a link: tag it in a second message
            ipr.link("set", index=index, ifalias=rules.bridge_alias(self.project, network.name))
            self._configure_bridge(ipr, network, name, index)
        except BaseException:
            with contextlib.suppress(NetlinkError):
                ipr.link("del", index=index)  # the caller records no undo for a failed step
            raise

    def _configure_bridge(self, ipr: IPRoute, network: NetworkSpec, name: str, index: int) -> None:
        write_sysctl(f"net/ipv6/conf/{name}/disable_ipv6", "1")
        write_sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")
        have = {
            (a.get_attr("IFA_ADDRESS"), a["prefixlen"])
            for a in ipr.get_addr(family=socket.AF_INET, index=index)
        }
        if (str(network.gateway), network.subnet.prefixlen) not in have:
            ipr.addr("add", index=index, address=str(network.gateway), prefixlen=network.subnet.prefixlen,
                     flags=IFA_F_NOPREFIXROUTE)
        ipr.link("set", index=index, state="up")
        ipr.route("replace", **self._route(network, index))

    def remove_network(self, ipr: IPRoute, network: NetworkSpec) -> None:
        index = self._bridge_index(ipr, network.name)
        if index is None:
            return
        try:
            ipr.link("del", index=index)  # its address and routes go with it
        except NetlinkError as e:
            if e.code not in (errno.ENODEV, errno.ENOENT):
                raise

    @staticmethod
    def table_problems(specs: list[ProjectSpec]) -> str | None:
        """The kernel's bridges and iptables have no table of fastnet's to fill."""
        return None

    def owned_networks(self, ipr: IPRoute) -> list[NetworkSpec]:
        """The project's bridges as the kernel shows them (for down without state)."""
        prefix = rules.bridge_alias(self.project, "")
        found = []
        for link in ipr.get_links():
            alias = link.get_attr("IFLA_IFALIAS") or ""
            info = link.get_attr("IFLA_LINKINFO")
            if not alias.startswith(prefix) or "/" in alias[len(prefix):] or not info:
                continue
            if info.get_attr("IFLA_INFO_KIND") != "bridge":
                continue
            network = alias[len(prefix):]
            for addr in ipr.get_addr(family=socket.AF_INET, index=link["index"]):
                gateway = IPv4Address(addr.get_attr("IFA_ADDRESS"))
                subnet = IPv4Network(f"{gateway}/{addr['prefixlen']}", strict=False)
                found.append(NetworkSpec(network, 0, subnet, gateway))
                break
            else:
                found.append(NetworkSpec(network, 0, IPv4Network("0.0.0.0/32"), IPv4Address("0.0.0.0")))
        return found

    def attach_port(self, ipr: IPRoute, network: NetworkSpec, iface: InterfaceSpec, ifindex: int) -> None:
        bridge = self._bridge_index(ipr, network.name)
        if bridge is None:
            raise IptablesError(f"network {network.name}: bridge {self.bridge_name(network.name)} is missing")
        ipr.link("set", index=ifindex, master=bridge)
        ipr.brport("set", index=ifindex, mode=1)  # hairpin: a container reaches its own published port
        ipr.link("set", index=ifindex, state="up")

    # -- the ruleset -------------------------------------------------------------------------------
    def _states(self, current: ProjectState | None) -> list[ProjectState]:
        return statestore.backend_states(self.host, self.name, current)

    def sync(self, state: ProjectState | None) -> None:
        record = self._record()
        ruleset = rules.ruleset_of(self._states(state))
        restore(rules.render_sync(ruleset, save()), self.host.dir / RESTORE_TIMES)
        self._host_settings(record)

    def _record(self) -> dict:
        """The host record, made before fastnet's first change: which nf_tables tables existed."""
        try:
            return json.loads(self.record_file.read_text())
        except (OSError, ValueError):
            pass
        variant = iptables_variant()
        record = {"variant": variant, "sysctls": {}, "forward_policy": None, "created_tables": []}
        if variant == "nf_tables" and procs.which("nft") is not None:
            existing = set(re.findall(r"^table ip (\S+)$", _run("nft", "list", "tables", "ip", check=False).stdout, re.M))
            record["created_tables"] = [t for t in rules.TABLES if t not in existing]
        self._write_record(record)
        return record

    def _write_record(self, record: dict) -> None:
        self.record_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.record_file.with_suffix(f".tmp.{os.getpid()}")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        os.replace(tmp, self.record_file)

    def _host_settings(self, record: dict) -> None:
        """ip_forward and bridge-nf-call-iptables on, as on a Docker host, remembering the old
        values (recorded before they change). Turning forwarding on sets the FORWARD policy to
        DROP, as Docker does (setupIPv4Forwarding)."""
        changes = []
        for key in (IP_FORWARD, BRIDGE_NF_CALL_IPTABLES):
            old = read_sysctl(key)
            if old is None:
                raise IptablesError(f"/proc/sys/{key} is missing (the kernel needs br_netfilter)" if "bridge" in key
                                    else f"/proc/sys/{key} is missing")
            if old != "1":
                changes.append((key, old))
        if not changes:
            return
        for key, old in changes:
            record["sysctls"].setdefault(key, old)
        forward_changed = any(key == IP_FORWARD for key, _ in changes)
        if forward_changed and record["forward_policy"] is None:
            record["forward_policy"] = save().get("filter", rules.Table()).chains.get("FORWARD", "ACCEPT")
        self._write_record(record)
        for key, _ in changes:
            write_sysctl(key, "1")
        if forward_changed:
            _run("iptables", "-w", "-t", "filter", "-P", "FORWARD", "DROP")

    def teardown(self) -> None:
        """Drop this project's rules; with no iptables project left on the host, remove every
        chain and jump, and put back the host settings and tables as they were."""
        others = self._states(None)  # the caller has already removed this project's state
        if others:
            self.sync(None)
            return
        try:
            record = json.loads(self.record_file.read_text())
        except (OSError, ValueError):
            record = None
        if procs.which("iptables-save") is not None:
            restore(rules.render_teardown(save()))
        if record is None:
            return
        policy = record.get("forward_policy")
        if policy and policy != "DROP":
            current = save().get("filter", rules.Table()).chains.get("FORWARD")
            if current == "DROP":
                _run("iptables", "-w", "-t", "filter", "-P", "FORWARD", policy)
        for key, old in reversed(list(record.get("sysctls", {}).items())):
            if read_sysctl(key) == "1":
                write_sysctl(key, old)
        for table in record.get("created_tables", []):
            if _nft_table_is_empty(table):
                _run("nft", "delete", "table", "ip", table, check=False)
        self.record_file.unlink(missing_ok=True)

    # -- the containers' resolver --------------------------------------------------------------------
    def redirect_resolver(self, udp_port: int, tcp_port: int) -> None:
        """As Docker does with iptables: in the container's namespace (the calling thread's: a
        child process starts in the namespace of the thread that forks it), one *stateless*
        nftables chain rewrites queries to 127.0.0.11:53 to the resolver's ports and the
        replies back to port 53. Both directions are locally generated packets on lo, so one
        output-hook chain sees them; no NAT table and no conntrack (nothing else in the
        namespace gets tracked), and packets not on lo leave the chain at its first rule. The
        table goes with the namespace."""
        cp = procs.run([procs.which("nft") or "/usr/sbin/nft", "-f", "-"], input=resolver_ruleset(udp_port, tcp_port),
                       text=True, capture_output=True, timeout=10)
        if cp.returncode != 0:
            err = cp.stderr.strip().splitlines()
            raise OSError(f"nft (port redirect for {RESOLVER_ADDRESS}:{RESOLVER_PORT}) failed: "
                          f"{err[0] if err else cp.returncode}")

    def publish_resolvers(self, resolvers: dict[int, tuple[int, int]]) -> None:
        """No table: each namespace carries its own chain (redirect_resolver)."""

    # -- observing ------------------------------------------------------------------------------------
    def counters(self) -> dict[str, dict[str, tuple[int, int]]]:
        if procs.which("iptables-save") is None:
            return {}
        return rules.counters(save())

    def conntrack(self) -> list:
        return []  # `conntrack -L` shows the kernel's table; fastnet's view is the eBPF one

    def conntrack_flush(self) -> int:
        """Delete the kernel's conntrack entries of this backend's subnets (both directions)."""
        if procs.which("conntrack") is None:
            return 0
        removed = 0
        subnets = sorted({str(n.subnet) for st in self._states(None) for n in st.spec.networks.values()})
        for subnet in subnets:
            for direction in ("--orig-src", "--orig-dst", "--reply-src", "--reply-dst"):
                cp = _run("conntrack", "-D", direction, subnet, check=False)
                m = re.search(r"(\d+) flow entries have been deleted", cp.stderr)
                removed += int(m.group(1)) if m else 0
        return removed


def _nft_table_is_empty(table: str) -> bool:
    """An `ip` nf_tables table holding nothing but base chains with policy accept."""
    if procs.which("nft") is None:
        return False
    cp = _run("nft", "-j", "list", "table", "ip", table, check=False)
    if cp.returncode != 0:
        return False
    with contextlib.suppress(ValueError, KeyError, TypeError):
        for obj in json.loads(cp.stdout)["nftables"]:
            kind = next(iter(obj))
            if kind in ("metainfo", "table"):
                continue
            if kind == "chain" and "hook" in obj["chain"] and obj["chain"].get("policy", "accept") == "accept":
                continue
            return False
        return True
    return False
