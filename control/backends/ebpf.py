"""The eBPF backend: no bridge device and no iptables.

Each port's host end carries fn_from_container and the uplink carries fn_from_uplink. The
host reaches containers through per-container /32 routes and owns each gateway address on
the ports of its network (so the address lives exactly as long as a port does).

The datapath is one per host, shared by every project on it, like the uplink, the port
space and connection tracking it carries: its tables are always computed from the states of
all the host's projects.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
from collections import Counter
from ipaddress import IPv4Address, IPv4Network

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ...datapath import abi, ctcarry, loader, nlbatch, ovlcarry, sockhooks, tc
from ...datapath.maps import (CtBudgets, HostRecord, IpvlanPortRecord, Maps, NetworkRecord, OverlayNetRecord, PortRecord,
                              ServiceRecord, VlanRecord, ct_budgets, ct_table_entries, port_prefixes)
from .. import modes, netdrivers, observe, routing
from .. import state as statestore
from ..dns import RESOLVER_ADDRESS, RESOLVER_PORT
from ..host import Host
from ..links import RTPROT_FASTNET, route_metric
from ..netdrivers import Role
from ..spec import InterfaceSpec, NetworkSpec, ProjectSpec
from ..state import ProjectState, port_key

NUD_PERMANENT = 0x80
PORT_PROGRAM = "fn_from_container"
UPLINK_PROGRAM = "fn_from_uplink"
IPVLAN_PROGRAM = "fn_from_ipvlan"  # host end of an ipvlan container's veth
PARENT_PROGRAM = "fn_from_parent"  # parent of ipvlan networks (the uplink has fn_from_uplink instead)
TAGGER_PROGRAM = "fn_from_tagger"  # peer of an emulated 802.1Q sub-interface
ROUTE_PROGRAM = "fn_from_route"  # other host devices with an address: replies of SNAT flows routed out of them
VXLAN_PROGRAM = "fn_from_vxlan"  # the host's VXLAN device (overlay networks)
PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


def _role(net: NetworkSpec | None) -> Role | None:
    """How this datapath serves a network's ports (None: a network no longer known)."""
    return netdrivers.of(net).role if net is not None else None


class EbpfBackend:
    name = "ebpf"
    copies_host_facts = True  # its tables hold the uplink's address and the host's addresses

    def __init__(self, host: Host, project: str):
        self.host = host
        self.project = project
        self.pin_root = host.bpffs
        self.uplink_file = host.dir / "uplink.json"  # what fastnet attached to the uplink
        self.parents_file = host.dir / "parents.json"  # ipvlan parents fastnet attached to
        self.routes_file = host.dir / "routes.json"  # other devices SNAT may leave by
        self.dp: loader.Datapath | None = None
        # The published ports this process last wrote to the datapath: later syncs write only
        # the difference. None: unknown (first sync, or a write failed), so reconcile in full.
        self._published: frozenset[ServiceRecord] | None = None

    def host_mac(self, network: NetworkSpec) -> str:
        # Every port's host end answers as the gateway: frames the container sends to the
        # gateway MAC are then addressed to the device itself and enter the host stack.
        return network.gateway_mac

    @staticmethod
    def budgets(spec: ProjectSpec) -> CtBudgets:
        ct = spec.conntrack
        return ct_budgets(ct.max_flows, ct.max_new_flows, ct.inbound_percent, ct.owner_percent)

    @classmethod
    def defines(cls, spec: ProjectSpec) -> tuple[tuple[str, int], ...]:
        """Compile-time settings: fn_ct's capacity, two entries per flow of the budgets."""
        return (("FN_CT_MAX", ct_table_entries(cls.budgets(spec))),)

    @staticmethod
    def table_problems(specs: list[ProjectSpec]) -> str | None:
        """What would not fit in the datapath's tables with these projects (every ebpf project
        of the host after the run) on it; the sizes are abi.h's."""
        limits = abi.constants()
        where = "in bpf/include/fastnet/abi.h"
        per_network: Counter[tuple[str, str]] = Counter()
        ipvlan_ports = resolvers = 0
        prefixes = {"fn_svc_any": 0, "fn_svc_addr": 0}
        for spec in specs:
            for c in spec.containers.values():
                resolvers += modes.owns_namespace(c)
                for i in c.interfaces:
                    role = _role(spec.networks.get(i.network))
                    if role is Role.BRIDGED:
                        per_network[(spec.name, i.network)] += 1
                    ipvlan_ports += role is Role.PARENT
                for m in c.publish:
                    table = "fn_svc_any" if m.host_ip is None else "fn_svc_addr"
                    prefixes[table] += len(port_prefixes(m.host_port_first, m.host_port_last))
        for (project, network), count in per_network.items():
            if count > limits["FN_MAX_FLOOD_PORTS"]:
                return (f"networks.{network}: {count} container interfaces, above the datapath's "
                        f"{limits['FN_MAX_FLOOD_PORTS']} per network (FN_MAX_FLOOD_PORTS {where})")
        networks = sum(1 for spec in specs for n in spec.networks.values() if _role(n) is Role.BRIDGED)
        totals = [
            (networks, "FN_MAX_NETWORKS", "bridge networks on this host"),
            (sum(per_network.values()), "FN_MAX_ENDPOINTS", "container interfaces on bridge networks on this host"),
            (ipvlan_ports, "FN_MAX_ENDPOINTS", "ipvlan interfaces on this host"),
            (resolvers, "FN_MAX_ENDPOINTS", "containers with a resolver on this host"),
            (prefixes["fn_svc_any"], "FN_MAX_SERVICES", "table entries for ports published on every address"),
            (prefixes["fn_svc_addr"], "FN_MAX_SERVICES", "table entries for ports published on one address"),
        ]
        for count, limit, what in totals:
            if count > limits[limit]:
                return f"{count} {what}, above the datapath's {limits[limit]} ({limit} {where})"
        return None

    def prepare(self, spec: ProjectSpec) -> None:
        if self.dp is None:
            self.dp = loader.load_pinned(self.pin_root, self.defines(spec))
            self._defines = self.defines(spec)

    def _subnet_route(self, network: NetworkSpec) -> dict:
        # Addresses of the subnet that are not (yet) containers must not follow the default
        # route out of the host; the metric tags the route with its project.
        return {
            "dst": str(network.subnet),
            "type": "unreachable",
            "proto": RTPROT_FASTNET,
            "priority": route_metric(self.project),
        }

    def add_network(self, ipr: IPRoute, network: NetworkSpec) -> None:
        ipr.route("replace", **self._subnet_route(network))

    def remove_network(self, ipr: IPRoute, network: NetworkSpec) -> None:
        try:
            ipr.route("del", **self._subnet_route(network))
        except NetlinkError as e:
            if e.code not in (errno.ESRCH, errno.ENOENT):
                raise

    def owned_networks(self, ipr: IPRoute) -> list[NetworkSpec]:
        """The project's network routes as the kernel shows them (for down without state)."""
        found = []
        for route in ipr.get_routes(family=socket.AF_INET, table=254, proto=RTPROT_FASTNET):
            if route.get_attr("RTA_PRIORITY") == route_metric(self.project) and route.get_attr("RTA_DST"):
                subnet = IPv4Network(f"{route.get_attr('RTA_DST')}/{route['dst_len']}")
                found.append(NetworkSpec(str(subnet), 0, subnet, subnet.network_address + 1))
        return found

    def attach_port(self, ipr: IPRoute, network: NetworkSpec, iface: InterfaceSpec, ifindex: int) -> None:
        assert self.dp is not None
        if _role(network) is Role.PARENT:
            # Nothing on the host side: no address, route or neighbour; the program alone
            # moves the container's frames (its table entries come with sync()).
            tc.attach(ipr, ifindex, self.dp.progs[IPVLAN_PROGRAM], IPVLAN_PROGRAM)
            return
        # One datagram (datapath/nlbatch.py): this runs once per container in `up`. The
        # kernel runs the messages in order, so the route's prefsrc is already an address;
        # the port was created by this `up`, so it has no clsact yet (tc.attach_messages).
        nlbatch.send(ipr, [
            nlbatch.addr_add(ifindex, str(network.gateway), 32),
            nlbatch.route_replace(
                str(iface.ipv4), 32, ifindex,
                scope=253,  # link: the container is directly on this device
                prefsrc=str(network.gateway),
                proto=RTPROT_FASTNET,
            ),
            nlbatch.neigh_replace(ifindex, str(iface.ipv4), iface.mac, NUD_PERMANENT),
            *tc.attach_messages(ifindex, self.dp.progs[PORT_PROGRAM], PORT_PROGRAM),
        ])

    def _states(self, current: ProjectState | None) -> list[ProjectState]:
        return statestore.backend_states(self.host, self.name, current)

    def sync(self, state: ProjectState | None) -> None:
        assert self.dp is not None
        states = self._states(state)
        networks, ports, services = [], [], []
        for st in states:
            for n in st.spec.networks.values():
                if _role(n) is Role.BRIDGED:
                    networks.append(NetworkRecord(n.net_id, n.subnet, n.gateway, n.gateway_mac, n.internal))
            for c in st.spec.containers.values():
                for i in c.interfaces:
                    ifindex = st.ports.get(port_key(c.name, i.network))
                    net = st.spec.networks.get(i.network)
                    if ifindex is not None and _role(net) is Role.BRIDGED:
                        ports.append(PortRecord(ifindex, i.mac, i.ipv4, net.net_id))
                services += self._services(st, c)
        uplink_name = next((st.spec.uplink for st in states if st.spec.uplink), None)
        with IPRoute() as ipr:
            ipvlan_ports, parents = self._ipvlan(ipr, states)
            vlan_parents = {n.parent for st in states for n in st.spec.networks.values() if n.parent}
            vlans = netdrivers.vlan.emulated(ipr, vlan_parents)
        maps = Maps(self.dp)
        gone = set(maps.endpoints()) - {p.ifindex for p in ports}
        maps.sync(networks, ports)
        if gone:  # a container's flows go with its interface (it may come back on another)
            maps.conntrack_forget_ports({p.ifindex for p in ports})
        maps.sync_ipvlan(ipvlan_ports)
        maps.sync_vlans([VlanRecord(base, vid, tagger) for base, vid, tagger, _ in vlans])
        vxlan = self._sync_overlay(maps, states)
        with IPRoute() as ipr:
            parents |= {ipr.get_links(base)[0].get_attr("IFLA_IFNAME") for base, _, _, _ in vlans}
            ifindex, address = observe.uplink(ipr, uplink_name)
            fib_ifindex = routing.fib_device(ipr) if ifindex else 0
            host = HostRecord(
                uplink_ifindex=ifindex,
                uplink_ipv4=address,
                snat_ports=observe.snat_port_range(),
                netns_cookie=observe.netns_cookie(),
                addresses=tuple(observe.host_addresses(ipr)),
                timeouts=states[0].spec.conntrack.timeouts if states else None,
                budgets=self.budgets(states[0].spec) if states else None,
                uplink_is_parent=bool(ifindex) and uplink_name in parents,
                fib_ifindex=fib_ifindex,
                uplink_mtu=observe.link_mtu(ipr, ifindex),
            )
        maps.sync_host(host)  # before any move: the flows carried over are admitted by its budgets
        # A new build, or one a killed run pinned without moving the ports over to it.
        if self.dp.fresh or loader.stale_pin_dirs(self.pin_root, self._defines):
            self._move_ports_to(self.dp, ports, ipvlan_ports)
        with IPRoute() as ipr:
            for _, _, tagger, _ in vlans:  # the tagger is fastnet's own link: its clsact goes with it
                tc.attach(ipr, tagger, self.dp.progs[TAGGER_PROGRAM], TAGGER_PROGRAM)
            if vxlan:  # overlay networks: fastnet's own device, its clsact goes with it
                tc.attach(ipr, vxlan, self.dp.progs[VXLAN_PROGRAM], VXLAN_PROGRAM)
            self._sync_services(maps, services)
            self._attach_uplink(ipr, uplink_name if ifindex else None)
            # fn_from_uplink does fn_from_parent's work first; any other parent gets its own
            self._attach_parents(ipr, parents - ({uplink_name} if ifindex else set()))
            routes = routing.route_devices(ipr, skip={uplink_name, *parents}) if fib_ifindex else {}
            self._attach_routes(ipr, set(routes))
        sockhooks.attach(self.dp, self.host.cgroup)

    @staticmethod
    def _sync_overlay(maps: Maps, states: list[ProjectState]) -> int:
        """fn_ovl_nets and fn_ovl_vnis of the overlay networks (control/netdrivers/overlay.py);
        returns the VXLAN device's ifindex (0: none). The agent writes fn_ovl_remotes."""
        from ..netdrivers.overlay import vxlan_ifindex

        with IPRoute() as ipr:
            vxlan = vxlan_ifindex(ipr)
        nets = [OverlayNetRecord(n.net_id, n.vni, vxlan) for st in states for n in st.spec.networks.values()
                if n.vni is not None and vxlan]
        maps.sync_overlay_nets(nets)
        return vxlan if nets else 0

    def _sync_services(self, maps: Maps, services: list[ServiceRecord]) -> None:
        wanted = frozenset(services)  # sync_services keeps this very set: hashed once
        previous, self._published = self._published, None
        maps.sync_services(wanted, previous)
        self._published = wanted

    def _ipvlan(self, ipr: IPRoute, states: list[ProjectState]) -> tuple[list[IpvlanPortRecord], set[str]]:
        """The ipvlan ports of every project, and the parents they need a program on."""
        records, parents = [], set()
        for st in states:
            for c in st.spec.containers.values():
                for i in c.interfaces:
                    net = st.spec.networks.get(i.network)
                    ifindex = st.ports.get(port_key(c.name, i.network))
                    if _role(net) is not Role.PARENT or ifindex is None:
                        continue
                    found = ipr.link_lookup(ifname=net.parent)
                    if not found:
                        continue  # the parent vanished: its containers are cut off, nothing to route
                    mac = ipr.get_links(found[0])[0].get_attr("IFLA_ADDRESS")
                    records.append(IpvlanPortRecord(ifindex, found[0], mac, i.ipv4, net.mode == "l3"))
            parents |= {n.parent for n in st.spec.networks.values() if _role(n) is Role.PARENT and n.parent}
        return records, parents

    def _attach_parents(self, ipr: IPRoute, wanted: set[str]) -> None:
        """fn_from_parent on exactly the wanted parents (of ipvlan networks and of emulated
        sub-interfaces)."""
        self._attach_on(ipr, wanted, self.parents_file, PARENT_PROGRAM)

    def _attach_routes(self, ipr: IPRoute, wanted: set[str]) -> None:
        """fn_from_route on exactly the wanted devices (control/routing.route_devices)."""
        self._attach_on(ipr, wanted, self.routes_file, ROUTE_PROGRAM)

    def _attach_on(self, ipr: IPRoute, wanted: set[str], record_file, program: str) -> None:
        """`program` on exactly the wanted devices (replace, never a gap); on a device it
        leaves, remove the program and the clsact qdisc only if fastnet created it. The record
        file remembers, per device, whether fastnet made its clsact."""
        assert self.dp is not None or not wanted
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            record = {}
        for name in sorted(set(record) - wanted):
            found = ipr.link_lookup(ifname=name)
            if found:
                attached = tc.attached(ipr, found[0])
                if attached and attached[1] == program:
                    tc.detach(ipr, found[0])
                    attached = None
                # not while another fastnet program uses it (e.g. the parent became the uplink)
                if record[name].get("created_clsact") and attached is None:
                    tc.remove_clsact(ipr, found[0])
            del record[name]
        for name in sorted(wanted):
            found = ipr.link_lookup(ifname=name)
            if not found:
                continue
            created = tc.ensure_clsact(ipr, found[0])
            tc.attach(ipr, found[0], self.dp.progs[program], program)
            record.setdefault(name, {"created_clsact": created})
        if record:
            record_file.write_text(json.dumps(record))
        else:
            record_file.unlink(missing_ok=True)

    def _move_ports_to(self, dp: loader.Datapath, ports: list[PortRecord], ipvlan_ports: list[IpvlanPortRecord] = ()) -> None:
        """A new build replaced the pinned one: carry the old builds' flows and the other
        hosts' containers over, move every port and the socket hooks to it (replace, no gap),
        then drop the old pins."""
        self._carry_conntrack(dp)
        # before any port moves: a port of the new build sends to the other hosts' containers
        # at once, and the agent refills the table only later (datapath/ovlcarry.py)
        ovlcarry.carry(loader.stale_pin_dirs(self.pin_root, self._defines), dp.maps[ovlcarry.TABLE])
        with IPRoute() as ipr:
            for p in ports:
                tc.attach(ipr, p.ifindex, dp.progs[PORT_PROGRAM], PORT_PROGRAM)
            for p in ipvlan_ports:
                tc.attach(ipr, p.ifindex, dp.progs[IPVLAN_PROGRAM], IPVLAN_PROGRAM)
        self._carry_resolvers(dp)
        sockhooks.attach(dp, self.host.cgroup)
        for stale in loader.stale_pin_dirs(self.pin_root, self._defines):
            loader.remove_pins(stale)
        dp.fresh = False

    def _carry_conntrack(self, dp: loader.Datapath) -> None:
        """Every flow the older builds track goes into the new build before any port moves to
        it (datapath/ctcarry.py: read with the layout of each build's ABI, inserted within the
        new budgets), so that an upgrade breaks no connection and no mapping changes."""
        old = loader.stale_pin_dirs(self.pin_root, self._defines)
        if old:
            ctcarry.carry(old, Maps(dp))
        if any((ctcarry.abi_version(d) or 0) < abi.ABI_VERSION for d in old):
            # An agent started before the upgrade cannot open this build (its conntrack
            # collection would stop): the keeper restarts it with the code on disk.
            agent = self.host.live_agent()
            if agent is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(agent.pid, signal.SIGTERM)

    def _carry_resolvers(self, dp: loader.Datapath) -> None:
        """The new build's fn_resolvers starts empty, and the agent refills it only at its
        reload after `up`: copy the old builds' entries first, so that removing their hooks
        leaves no moment in which 127.0.0.11:53 goes unredirected. (A build of another ABI
        version cannot be read; its containers wait for the reload.)"""
        carried, address = {}, None  # one resolver address (127.0.0.11) for every container
        for old in loader.open_all_pinned(self.pin_root):
            try:
                if old.pin_dir != dp.pin_dir:
                    for cookie, (address, udp, tcp) in Maps(old).resolvers().items():
                        carried[cookie] = (udp, tcp)
            finally:
                old.close()
        if carried:
            Maps(dp).sync_resolvers(carried, address)

    # -- the containers' resolver ------------------------------------------------------------
    def redirect_resolver(self, udp_port: int, tcp_port: int) -> None:
        """Nothing in the namespace: the socket hooks read fn_resolvers (publish_resolvers)."""

    def publish_resolvers(self, resolvers: dict[int, tuple[int, int]]) -> None:
        """fn_resolvers of every pinned build holds exactly `resolvers`: the socket hooks
        (bpf/lib/sock.h) send a container's connect()/sendmsg() to 127.0.0.11:53 to its
        resolver's port, and show 127.0.0.11:53 again to recvmsg() and getpeername(). The pins
        are reopened each time: an upgrade may have replaced them (while `up` moves to a new
        build, both are pinned and both builds' hooks attached: both get the table)."""
        pinned = loader.open_all_pinned(self.pin_root)
        if not pinned and resolvers:
            raise OSError(f"no eBPF datapath is loaded: {RESOLVER_ADDRESS}:{RESOLVER_PORT} is not redirected")
        try:
            for dp in pinned:
                Maps(dp).sync_resolvers(resolvers, IPv4Address(RESOLVER_ADDRESS))
        finally:
            for dp in pinned:
                dp.close()

    def _services(self, st: ProjectState, c) -> list[ServiceRecord]:
        iface = c.publish_interface
        ifindex = st.ports.get(port_key(c.name, iface.network)) if iface else None
        if iface is None or ifindex is None:
            return []
        net = st.spec.networks[iface.network]
        return [
            ServiceRecord(
                proto=PROTOCOLS[m.proto],
                host_addr=int(m.host_ip) if m.host_ip is not None else None,
                host_port_first=m.host_port_first,
                host_port_last=m.host_port_last,
                backend_ipv4=int(iface.ipv4),
                backend_port_first=m.container_port_first,
                backend_ifindex=ifindex,
                backend_mac=iface.mac,
                gateway=int(net.gateway),
                gateway_mac=net.gateway_mac,
                local_only=m.host_ip is not None and m.host_ip.is_loopback,
            )
            for m in c.publish
        ]

    def _attach_uplink(self, ipr: IPRoute, name: str | None) -> None:
        """Keep fn_from_uplink on exactly the current uplink (replace, never a gap)."""
        assert self.dp is not None
        record = self._uplink_record()
        if record and record["ifname"] != name:
            self._detach_uplink(ipr)
            record = None
        if name is None:
            return
        ifindex = ipr.link_lookup(ifname=name)[0]
        created = tc.ensure_clsact(ipr, ifindex)
        tc.attach(ipr, ifindex, self.dp.progs[UPLINK_PROGRAM], UPLINK_PROGRAM)
        if record is None:
            self.uplink_file.write_text(json.dumps({"ifname": name, "created_clsact": created}))

    def _uplink_record(self) -> dict | None:
        try:
            return json.loads(self.uplink_file.read_text())
        except (OSError, ValueError):
            return None

    def _detach_uplink(self, ipr: IPRoute) -> None:
        """Remove fastnet's program from the uplink, and the clsact qdisc only if fastnet made it."""
        record = self._uplink_record()
        if record is None:
            return
        found = ipr.link_lookup(ifname=record["ifname"])
        if found:
            attached = tc.attached(ipr, found[0])
            if attached and attached[1] == UPLINK_PROGRAM:
                tc.detach(ipr, found[0])
            if record.get("created_clsact"):
                tc.remove_clsact(ipr, found[0])
        self.uplink_file.unlink(missing_ok=True)

    def teardown(self) -> None:
        """Forget this project's entries; unpin the datapath when no project uses it."""
        others = self._states(None)  # the caller has already removed this project's state
        if others:
            self.prepare(others[0].spec)
            self.sync(None)
            return
        with IPRoute() as ipr:
            self._attach_parents(ipr, set())
            self._attach_routes(ipr, set())
            self._detach_uplink(ipr)
            routing.remove_fib_device(ipr)
        if self.dp is not None:
            self.dp.close()
            self.dp = None
            self._published = None
        if self.pin_root.exists():
            for child in self.pin_root.iterdir():
                loader.remove_pins(child)

    def _maps(self) -> Maps | None:
        dp = self.dp or loader.open_pinned(self.pin_root)
        return Maps(dp) if dp is not None else None

    def counters(self) -> dict[str, dict[str, tuple[int, int]]]:
        maps = self._maps()
        return maps.counters() if maps else {}

    def conntrack(self) -> list:
        maps = self._maps()
        return maps.conntrack() if maps else []

    def conntrack_flush(self) -> int:
        maps = self._maps()
        return maps.conntrack_flush() if maps else 0
