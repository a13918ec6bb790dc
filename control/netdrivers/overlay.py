"""The overlay driver: one network across hosts (Docker's overlay), VXLAN in eBPF and etcd.

On each host an overlay network is a bridge network of the eBPF datapath (veth ports, the
host's gateway, SNAT and publishing through the local uplink, isolation) whose containers on
other hosts are reached through the host's one external (collect_md) VXLAN device,
`fastnet-vxlan` (bpf/lib/overlay.h). What the hosts share lives in the store (control/store.py):

- the network's subnet, gateway and VNI, written by the first host that joins (a host whose
  file says otherwise is refused);
- each container address, claimed by compare-and-swap before anything is made (`settle`), so
  two hosts never give one address; claims are not leased: a host that re-joins (same underlay
  address, project and container names) gets its addresses back;
- the running containers, registered by the agent under its host's lease
  (control/overlaysync.py), which every host's agent watches into its fn_ovl_remotes and its
  resolver.

The host is known to the others by its uplink's IPv4 address (the underlay). Containers' MTU
is the uplink's minus the 50 bytes of encapsulation (FN_VXLAN_HLEN).
"""
from __future__ import annotations

import errno
import json
import zlib
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pyroute2.netlink.exceptions import NetlinkError

from ...datapath.errors import FastnetError
from .. import state as statestore
from ..spec import LINK_ALIAS_PREFIX
from ..store import PREFIX, Store, StoreError
from .base import NetworkDriver, Role

if TYPE_CHECKING:
    from pyroute2 import IPRoute

    from ..project import Project
    from ..spec import InterfaceSpec, NetworkSpec, ProjectSpec

VXLAN_DEVICE = "fastnet-vxlan"
VXLAN_ALIAS = LINK_ALIAS_PREFIX + "-host/vxlan"  # the host's, shared by projects (cf. netdrivers/vlan.py)
VXLAN_HLEN = 50  # outer Ethernet, IPv4, UDP and VXLAN headers (FN_VXLAN_HLEN in abi.h)
VNI_FIRST, VNI_LAST = 4096, (1 << 24) - 1
CLAIM_ROUNDS = 8


class OverlayError(FastnetError):
    pass


def network_key(name: str, *parts: str) -> str:
    return "/".join((PREFIX, "net", name, *parts))


def owner(host: IPv4Address, project: str, container: str) -> str:
    """The value of an address claim: who holds it (compared byte for byte: keep it canonical)."""
    return json.dumps({"container": container, "host": str(host), "project": project}, sort_keys=True)


def underlay_address(ipr: IPRoute, uplink: str | None) -> IPv4Address:
    """This host's address on the underlay: its uplink's IPv4 address."""
    from .. import observe

    _, address = observe.uplink(ipr, uplink)
    if address is None:
        raise OverlayError(f"uplink: {uplink or 'no uplink'} has no IPv4 address, which the overlay's other "
                           "hosts would reach this one at")
    return address


def join(store: Store, net: NetworkSpec) -> int:
    """The network's VNI; the first host to join records subnet, gateway and VNI."""
    key = network_key(net.name, "config")
    mine = {"gateway": str(net.gateway), "subnet": str(net.subnet)}
    found = store.get(key)
    if found is None:
        vni = VNI_FIRST + zlib.crc32(net.name.encode()) % (VNI_LAST - VNI_FIRST)
        for _ in range(64):  # a VNI another overlay network holds: the next one
            holder = store.create(f"{PREFIX}/vni/{vni}", net.name)
            if holder in (None, net.name):
                break
            vni = vni + 1 if vni < VNI_LAST else VNI_FIRST
        else:
            raise OverlayError(f"networks.{net.name}: no free VNI found in the store")
        found = store.create(key, json.dumps({**mine, "vni": vni}, sort_keys=True))
        if found is None:
            return vni
    theirs = json.loads(found)
    if {k: theirs.get(k) for k in mine} != mine:
        raise OverlayError(f"networks.{net.name}: the overlay's hosts use subnet {theirs.get('subnet')} and gateway "
                           f"{theirs.get('gateway')}, this file {net.subnet} and {net.gateway}")
    return int(theirs["vni"])


def _claims(store: Store, net: str) -> dict[IPv4Address, dict]:
    kvs, _ = store.get_prefix(network_key(net, "ip") + "/")
    return {IPv4Address(k.rsplit("/", 1)[1]): json.loads(v) for k, v in kvs.items()}


class Overlay(NetworkDriver):
    name = "overlay"
    role = Role.BRIDGED  # on each host, the eBPF datapath's bridging; other hosts through VXLAN
    sets_mtu = True
    mtu_overhead = VXLAN_HLEN
    needs_store = True
    backends = frozenset({"ebpf"})
    backends_why = " (VXLAN tunnel keys are set by its programs)"

    # -- before anything is made ----------------------------------------------------------------
    def preflight(self, ipr: IPRoute, net: NetworkSpec, desired: ProjectSpec, others: list[ProjectSpec]) -> str | None:
        problem = super().preflight(ipr, net, desired, others)
        if problem:
            return problem
        for other in others:
            on = other.networks.get(net.name)
            if on is not None and on.driver == self.name:
                return (f"networks.{net.name}: project {other.name} on this host is already on overlay network "
                        f"{net.name}: one project per host joins an overlay network")
            if other.store and other.store != desired.store and any(n.driver == self.name for n in other.networks.values()):
                return f"store: project {other.name} on this host uses store {other.store}; a host has one store"
        return None

    def settle(self, desired: ProjectSpec, rebuild: Callable, previous: ProjectSpec | None) -> ProjectSpec:
        """Join each overlay network in the store (its VNI) and claim every container address
        by compare-and-swap, rebuilding the spec around addresses other hosts hold; release
        this project's claims it no longer uses. Nothing is made on this host before."""
        from pyroute2 import IPRoute

        nets = [n for n in desired.networks.values() if n.driver == self.name]
        if not nets:
            return desired
        with IPRoute() as ipr:
            host = underlay_address(ipr, desired.uplink)
        store = Store(desired.store)
        try:
            vnis = {n.name: join(store, n) for n in nets}
            for _ in range(CLAIM_ROUNDS):
                taken: dict[str, frozenset] = {}
                claimed: dict[str, dict[str, IPv4Address]] = {}
                held: dict[tuple[str, IPv4Address], str] = {}  # (network, address) -> our claim's container
                for n in nets:
                    mine, others = {}, set()
                    for address, who in _claims(store, n.name).items():
                        if who.get("host") == str(host) and who.get("project") == desired.name:
                            mine[who.get("container")] = address
                            held[(n.name, address)] = who.get("container")
                        else:
                            others.add(address)
                    taken[n.name], claimed[n.name] = frozenset(others), mine
                spec = rebuild(taken, claimed)
                wanted = {(i.network, i.ipv4): c.name for c in spec.containers.values() for i in c.interfaces
                          if i.network in vnis}
                lost = False
                for (network, address), container in sorted(wanted.items()):
                    value = owner(host, desired.name, container)
                    found = store.create(network_key(network, "ip", str(address)), value)
                    lost = lost or (found is not None and found != value)
                if not lost:
                    break
            else:
                raise OverlayError("overlay addresses: other hosts kept taking the addresses this run chose; try again")
            for (network, address), container in held.items():
                if wanted.get((network, address)) != container:
                    store.delete_if(network_key(network, "ip", str(address)), owner(host, desired.name, container))
        except StoreError as exc:
            raise OverlayError(str(exc)) from None
        networks = {k: replace(n, vni=vnis[k]) if k in vnis else n for k, n in spec.networks.items()}
        return replace(spec, networks=networks)

    # -- networks and interfaces ------------------------------------------------------------------
    def add_network(self, project: Project, net: NetworkSpec) -> None:
        ensure_vxlan(project.ipr, project.st.spec.vxlan_port)
        project.backend.add_network(project.ipr, net)

    def remove_network(self, project: Project, net: NetworkSpec) -> None:
        project.backend.remove_network(project.ipr, net)
        self._release(project, net)
        used = any(n.driver == self.name for n in project.st.spec.networks.values())
        used = used or any(n.driver == self.name for st in statestore.load_all(project.host, besides=project.st.name)
                           for n in st.spec.networks.values())
        if not used:
            remove_vxlan(project.ipr)

    def _release(self, project: Project, net: NetworkSpec) -> None:
        self._release_claims(project.ipr, project.st.spec, net, None)

    def release_addresses(self, ipr: IPRoute, spec: ProjectSpec, net: NetworkSpec, containers: list[str]) -> None:
        self._release_claims(ipr, spec, net, set(containers))

    @staticmethod
    def _release_claims(ipr: IPRoute, spec: ProjectSpec, net: NetworkSpec, containers: set[str] | None) -> None:
        """The project's address claims on the network, or only those of `containers` (best
        effort: with the store out of reach they stay, and this host gets them back when the
        project, or a container of that name, returns)."""
        if not spec.store:
            return
        try:
            host = underlay_address(ipr, spec.uplink)
            store = Store(spec.store)
            for address, who in _claims(store, net.name).items():
                if (who.get("host") == str(host) and who.get("project") == spec.name
                        and (containers is None or who.get("container") in containers)):
                    store.delete_if(network_key(net.name, "ip", str(address)), owner(host, spec.name, who["container"]))
        except (StoreError, OverlayError):
            pass

    def create_interface(self, project: Project, net: NetworkSpec, iface: InterfaceSpec, netns: Path) -> int:
        from .. import links

        return links.create_veth(project.ipr, iface, netns, project.backend.host_mac(net))


# -- the host's VXLAN device ------------------------------------------------------------------------
def vxlan_ifindex(ipr: IPRoute) -> int:
    """The host's VXLAN device fastnet made; 0 when there is none."""
    for link in ipr.get_links(ifname=VXLAN_DEVICE) if ipr.link_lookup(ifname=VXLAN_DEVICE) else []:
        if (link.get_attr("IFLA_IFALIAS") or "") == VXLAN_ALIAS:
            return link["index"]
    return 0


def ensure_vxlan(ipr: IPRoute, port: int) -> int:
    """One external (collect_md) VXLAN device per host: the tunnel key of each frame names
    VNI and remote (the kernel allows one such device per UDP port)."""
    index = vxlan_ifindex(ipr)
    if index:
        return index
    if ipr.link_lookup(ifname=VXLAN_DEVICE):
        raise OverlayError(f"interface {VXLAN_DEVICE} exists on this host and is not fastnet's")
    try:
        ipr.link("add", ifname=VXLAN_DEVICE, kind="vxlan", vxlan_collect_metadata=1, vxlan_port=port,
                 vxlan_learning=0)
    except NetlinkError as exc:
        raise OverlayError(f"creating {VXLAN_DEVICE} (external VXLAN on UDP port {port}) failed: {exc}") from None
    index = ipr.link_lookup(ifname=VXLAN_DEVICE)[0]
    from .. import sandbox

    sandbox.write_sysctl(None, f"net/ipv6/conf/{VXLAN_DEVICE}/disable_ipv6", "1")
    # the kernel ignores IFLA_IFALIAS when creating a link: tag it in a second message
    ipr.link("set", index=index, ifalias=VXLAN_ALIAS, state="up")
    return index


def remove_vxlan(ipr: IPRoute) -> None:
    index = vxlan_ifindex(ipr)
    if index:
        try:
            ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code not in (errno.ENODEV, errno.ENOENT):
                raise
