"""`parent: IF.VLAN`: the 802.1Q sub-interface a parent driver's network lives on.

It is created by fastnet when missing (tagged with an alias that belongs to no project, since
several projects may share it) and deleted when the last network of the host that uses it
goes; one that existed before is used and never deleted. Where the kernel has no 802.1Q driver
(this one), IF.VLAN is a veth end with the parent's MAC whose peer, the "tagger", carries
`fn_from_tagger` (tag and send out of the parent); the parent's program hands frames of that
VLAN to the tagger untagged (bpf/lib/vlan.h). That needs the eBPF backend.
"""
from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

from pyroute2.netlink.exceptions import NetlinkError

from .. import links, sandbox
from .. import state as statestore
from ..spec import LINK_ALIAS_PREFIX
from .base import DriverError

if TYPE_CHECKING:
    from pyroute2 import IPRoute

    from ..host import Host

# Sub-interfaces are the host's, shared by projects: their tag cannot be a project's
# (project names never start with '-'), so no project's `down` takes them by alias.
VLAN_ALIAS_PREFIX = LINK_ALIAS_PREFIX + "-host/vlan/"
# Where the kernel has no 802.1Q driver, IF.VLAN is one end of a veth pair and this its peer.
TAGGER_ALIAS_PREFIX = LINK_ALIAS_PREFIX + "-host/vlan-tagger/"


def tagger_name(parent: str) -> str:
    return "fnvt-" + hashlib.sha1(parent.encode()).hexdigest()[:10]


def vlan_of(parent: str) -> tuple[str, int] | None:
    """(base interface, VLAN id) for a parent written IF.VLAN, else None."""
    base, dot, vlan = parent.rpartition(".")
    if dot and base and vlan.isdigit():
        return base, int(vlan)
    return None


def kernel_has_8021q() -> bool:
    """The 8021q driver registers /proc/net/vlan in every namespace when it is present."""
    return os.path.isdir("/proc/net/vlan")


def ensure(ipr: IPRoute, network: str, parent: str) -> None:
    """Make sure `parent` exists: create the 802.1Q sub-interface when it is IF.VLAN."""
    vlan = vlan_of(parent)
    if vlan is None or ipr.link_lookup(ifname=parent):
        return
    base, vlan_id = vlan
    found = ipr.link_lookup(ifname=base)
    if not found:
        raise DriverError(f"networks.{network}.parent: no interface named {base!r} on this host")
    if kernel_has_8021q():
        ipr.link("add", ifname=parent, kind="vlan", link=found[0], vlan_id=vlan_id)
    else:
        # IF.VLAN is a veth end with the parent's MAC (as a VLAN device has); the eBPF
        # backend's fn_from_tagger on its peer and the parent's program tag and untag.
        tagger = tagger_name(parent)
        base_mac = ipr.get_links(found[0])[0].get_attr("IFLA_ADDRESS")
        ipr.link("add", ifname=parent, kind="veth", address=base_mac, peer={"ifname": tagger})
        tagger_index = ipr.link_lookup(ifname=tagger)[0]
        sandbox.write_sysctl(None, f"net/ipv6/conf/{tagger}/disable_ipv6", "1")
        ipr.link("set", index=tagger_index, ifalias=TAGGER_ALIAS_PREFIX + parent, state="up")
    index = ipr.link_lookup(ifname=parent)[0]
    # the kernel ignores IFLA_IFALIAS when creating a link: tag it in a second message
    ipr.link("set", index=index, ifalias=VLAN_ALIAS_PREFIX + parent, state="up")


def emulated(ipr: IPRoute, parents: set[str]) -> list[tuple[int, int, int, str]]:
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


def prune(ipr: IPRoute, host: Host, project: str | None = None, parents: frozenset[str] = frozenset()) -> list[str]:
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
