"""Network drivers: what a network's `driver:` means, one module each behind one interface (in
the manner of netavark's NetworkDriver). A new driver is a new module and one line in DRIVERS.

    bridge.py   fastnet's own bridging: the backend (eBPF or iptables) switches, routes, SNATs
                and publishes for the network (Docker's default and user-defined bridges)
    macvlan.py  the kernel's macvlan device on a parent, created inside the container
    ipvlan.py   ipvlan built on the eBPF datapath (this kernel has no ipvlan module)
    base.py     the interface (NetworkDriver), the ports' Role, DriverError
    parent.py   what macvlan and ipvlan share: a parent interface and its segment
    vlan.py     the 802.1Q sub-interfaces (`parent: IF.VLAN`) parent drivers may create
    overlay.py  a bridge network shared by several hosts through VXLAN and the store (etcd)

Everything else asks the driver of a network (`of(net)`) instead of comparing its name: the
config checks (modes, parent, internal, publishing), preflight, creating and removing networks
and interfaces, and what the backends do with a network's ports (`role`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import DEFAULT_DRIVER
from . import vlan  # noqa: F401  (netdrivers.vlan: the sub-interfaces, for the backends and `down`)
from .base import NetworkDriver, Role
from .bridge import Bridge
from .ipvlan import Ipvlan
from .macvlan import Macvlan
from .overlay import Overlay

if TYPE_CHECKING:
    from ..spec import NetworkSpec

__all__ = ["DEFAULT", "DRIVERS", "NetworkDriver", "Role", "of", "vlan"]

DEFAULT = DEFAULT_DRIVER
DRIVERS: dict[str, NetworkDriver] = {d.name: d for d in (Bridge(), Macvlan(), Ipvlan(), Overlay())}


def of(net: NetworkSpec | None) -> NetworkDriver:
    """The driver of a network (a network fastnet no longer knows of: the default's)."""
    return DRIVERS[net.driver if net is not None else DEFAULT]
