"""The network drivers other than bridge: macvlan and ipvlan, and the 802.1Q parent they share.

Docker's drivers, next to fastnet's:

- **macvlan** is the kernel's macvlan driver in both fastnet and Docker: each container
  interface is a macvlan device on `parent` (modes bridge, private, vepa, passthru), created
  directly inside the container's namespace, so it goes with the namespace. Containers are
  on the parent's L2 segment with their own MAC (02:fa:<address>, or the parent's in
  passthru); the host cannot reach them through the parent (macvlan never hands frames
  between the parent and its macvlan devices), exactly as with Docker. Backend-independent:
  no BPF and no iptables rule.
- **ipvlan**: this kernel has no ipvlan module. fastnet always takes its eBPF path, also on
  kernels that have the module: one datapath with the same anti-spoofing, counters and
  teardown as every other fastnet port, and one behaviour on every host (the module refuses
  a parent that already carries macvlan devices and changes how the parent's own traffic is
  received). Each container gets a veth whose container end has the parent's MAC (as a
  kernel ipvlan slave does); `fn_from_ipvlan` on the host end and `fn_from_parent` on the
  parent (bpf/lib/ipvlan.h) move frames between the containers and the wire. Needs the eBPF
  backend: `--backend iptables` refuses ipvlan networks (there is neither a module nor a
  datapath to build them on).
- **parent IF.VLAN**: the 802.1Q sub-interface is created by fastnet when missing (tagged
  with an alias that belongs to no project, since several projects may share it) and
  deleted when the last network of the host that uses it goes; one that existed before is
  used and never deleted. Where the kernel has no 802.1Q driver (this one), IF.VLAN is a
  veth end with the parent's MAC whose peer, the "tagger", carries `fn_from_tagger` (tag and
  send out of the parent); the parent's program hands frames of that VLAN to the tagger
  untagged (bpf/lib/vlan.h). That needs the eBPF backend.
- **gateway** of a macvlan/ipvlan network is the segment's router (default: the subnet's
  first address, as Docker's IPAM picks it); containers route through it (ipvlan l3:
  `default dev eth0`, the host routes). Nothing is published on these networks.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from . import links, sandbox
from . import state as statestore
from .host import Host
from .spec import LINK_ALIAS_PREFIX, InterfaceSpec, NetworkSpec
from ..datapath.errors import FastnetError

DRIVERS_WITH_PARENT = ("macvlan", "ipvlan")
IFF_NOARP = 0x80
# Sub-interfaces are the host's, shared by projects: their tag cannot be a project's
# (project names never start with '-'), so no project's `down` takes them by alias.
VLAN_ALIAS_PREFIX = LINK_ALIAS_PREFIX + "-host/vlan/"
# Where the kernel has no 802.1Q driver, IF.VLAN is one end of a veth pair and this its peer.
TAGGER_ALIAS_PREFIX = LINK_ALIAS_PREFIX + "-host/vlan-tagger/"


def tagger_name(parent: str) -> str:
    return "fnvt-" + hashlib.sha1(parent.encode()).hexdigest()[:10]


class DriverError(FastnetError):
    pass


def vlan_of(parent: str) -> tuple[str, int] | None:
    """(base interface, VLAN id) for a parent written IF.VLAN, else None."""
    base, dot, vlan = parent.rpartition(".")
    if dot and base and vlan.isdigit():
        return base, int(vlan)
    return None


def parent_problem(ipr: IPRoute, net: NetworkSpec, backend: str) -> str | None:
    """Why `net` cannot be built on this host (checked before anything is created)."""
    assert net.parent is not None
    vlan = vlan_of(net.parent)
    base = vlan[0] if vlan else net.parent
    if not ipr.link_lookup(ifname=base):
        return f"networks.{net.name}.parent: no interface named {base!r} on this host"
    if vlan and not ipr.link_lookup(ifname=net.parent) and not kernel_has_8021q() and backend != "ebpf":
        return (f"networks.{net.name}.parent: creating {net.parent} on this kernel (no 802.1Q driver, "
                f"CONFIG_VLAN_8021Q) needs the ebpf backend, which tags in its datapath, not {backend}")
    return None


def kernel_has_8021q() -> bool:
    """The 8021q driver registers /proc/net/vlan in every namespace when it is present."""
    return os.path.isdir("/proc/net/vlan")


def parent_ifindex(ipr: IPRoute, net: NetworkSpec) -> int:
    found = ipr.link_lookup(ifname=net.parent)
    if not found:
        raise DriverError(f"network {net.name}: parent {net.parent} is missing")
    return found[0]


def parent_mac(ipr: IPRoute, net: NetworkSpec) -> str:
    link = ipr.get_links(parent_ifindex(ipr, net))[0]
    return link.get_attr("IFLA_ADDRESS")


# -- networks ----------------------------------------------------------------------------------
def add_network(ipr: IPRoute, net: NetworkSpec) -> None:
    """Make sure the parent exists: create the 802.1Q sub-interface when it is IF.VLAN."""
    vlan = vlan_of(net.parent or "")
    if vlan is None or ipr.link_lookup(ifname=net.parent):
        return
    base, vlan_id = vlan
    found = ipr.link_lookup(ifname=base)
    if not found:
        raise DriverError(f"networks.{net.name}.parent: no interface named {base!r} on this host")
    if kernel_has_8021q():
        ipr.link("add", ifname=net.parent, kind="vlan", link=found[0], vlan_id=vlan_id)
    else:
        # IF.VLAN is a veth end with the parent's MAC (as a VLAN device has); the eBPF
        # backend's fn_from_tagger on its peer and the parent's program tag and untag.
        tagger = tagger_name(net.parent)
        base_mac = ipr.get_links(found[0])[0].get_attr("IFLA_ADDRESS")
        ipr.link("add", ifname=net.parent, kind="veth", address=base_mac, peer={"ifname": tagger})
        tagger_index = ipr.link_lookup(ifname=tagger)[0]
        sandbox.write_sysctl(None, f"net/ipv6/conf/{tagger}/disable_ipv6", "1")
        ipr.link("set", index=tagger_index, ifalias=TAGGER_ALIAS_PREFIX + net.parent, state="up")
    index = ipr.link_lookup(ifname=net.parent)[0]
    # the kernel ignores IFLA_IFALIAS when creating a link: tag it in a second message
    ipr.link("set", index=index, ifalias=VLAN_ALIAS_PREFIX + net.parent, state="up")


def emulated_vlans(ipr: IPRoute, parents: set[str]) -> list[tuple[int, int, int, str]]:
    """(base ifindex, VLAN id, tagger ifindex, tagger name) of each of `parents` that fastnet
    emulates with a veth pair."""
    found = []
    for parent in sorted(parents):
        vlan = vlan_of(parent)
        if vlan is None:
            continue
        base = ipr.link_lookup(ifname=vlan[0])
        tagger = ipr.link_lookup(ifname=tagger_name(parent))
        if not base or not tagger:
            continue
        alias = ipr.get_links(tagger[0])[0].get_attr("IFLA_IFALIAS") or ""
        if alias == TAGGER_ALIAS_PREFIX + parent:
            found.append((base[0], vlan[1], tagger[0], tagger_name(parent)))
    return found


def _parents_in_use(host: Host, project: str | None) -> set[str]:
    """Parents named by the networks recorded on this host by projects other than `project`."""
    used = set()
    for st in statestore.load_all(host, besides=project):  # unreadable: StateError, prune nothing
        for n in st.spec.networks.values():
            if n.parent:
                used.add(n.parent)
    return used


def prune_vlans(ipr: IPRoute, host: Host, project: str | None = None, parents: frozenset[str] = frozenset()) -> list[str]:
    """Delete the sub-interfaces fastnet created that no network of the host uses any more:
    this is their reference count. `project` uses `parents` (its state in memory, newer than
    its file); the other projects what their state files record."""
    used = _parents_in_use(host, project) | set(parents)
    errors = []
    for link in ipr.get_links():
        alias = link.get_attr("IFLA_IFALIAS") or ""
        name = link.get_attr("IFLA_IFNAME")
        if alias.startswith(VLAN_ALIAS_PREFIX) and name not in used:
            try:
                links.delete_link(ipr, name)
            except NetlinkError as exc:
                errors.append(f"sub-interface {name}: {exc}")
    return errors


# -- interfaces --------------------------------------------------------------------------------
def create_macvlan(ipr: IPRoute, net: NetworkSpec, iface: InterfaceSpec, netns: Path) -> int:
    """The container's macvlan device, created straight inside its namespace as ethN (so it
    goes with the namespace); returns its ifindex there."""
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        kw = {} if net.mode == "passthru" else {"address": iface.mac}  # passthru takes the parent's MAC
        ipr.link("add", ifname=iface.ifname, kind="macvlan", link=parent_ifindex(ipr, net),
                 macvlan_mode=net.mode, net_ns_fd=fd, **kw)
    finally:
        os.close(fd)
    with sandbox.netlink(netns) as inner:
        return inner.link_lookup(ifname=iface.ifname)[0]


def create_ipvlan_veth(ipr: IPRoute, net: NetworkSpec, iface: InterfaceSpec, netns: Path) -> int:
    """The veth of an ipvlan port: its container end carries the parent's MAC, so the
    container's own ARP replies already name the MAC the wire knows."""
    return links.create_veth(ipr, iface, netns, None, peer_mac=parent_mac(ipr, net))


def delete_macvlan(netns: Path, iface: InterfaceSpec) -> None:
    if not sandbox.alive(netns):
        return  # the device went with the namespace
    with sandbox.netlink(netns) as inner:
        found = inner.link_lookup(ifname=iface.ifname)
        if found:
            try:
                inner.link("del", index=found[0])
            except NetlinkError as e:
                if e.code not in (errno.ENODEV, errno.ENOENT):
                    raise


def configure_container_side(netns: Path, net: NetworkSpec, iface: InterfaceSpec) -> None:
    """As for a bridge port, but an ipvlan l3 interface resolves no neighbours (NOARP) and
    routes everything through the host (`default dev eth0`), like a kernel ipvlan l3 slave."""
    if not (net.driver == "ipvlan" and net.mode == "l3"):
        links.configure_container_side(netns, iface)
        return
    index = links.configure_container_side(netns, dataclasses.replace(iface, default_route=False))
    with sandbox.netlink(netns) as ipr:
        ipr.link("set", index=index, flags=IFF_NOARP, change=IFF_NOARP)
        if iface.default_route:
            ipr.route("replace", dst="0.0.0.0/0", oif=index, scope=253)


def interface_mac(net: NetworkSpec | None, iface: InterfaceSpec) -> str:
    """The MAC a container interface has: an ipvlan (or passthru macvlan) one has its parent's."""
    if net is None or not (net.driver == "ipvlan" or net.mode == "passthru"):
        return iface.mac
    try:
        with IPRoute() as ipr:
            return parent_mac(ipr, net)
    except (DriverError, NetlinkError, IndexError):
        return iface.mac
