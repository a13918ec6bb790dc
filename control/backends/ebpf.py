"""The eBPF backend: no bridge device. Each port's host end carries fn_from_container; the
host reaches containers through per-container /32 routes and owns each gateway address on
the ports of its network (so the address lives exactly as long as a port does).

The datapath is one per host, shared by every project on it (like the uplink, the port
space and connection tracking it will carry): its tables are always computed from the
states of all the host's projects."""
from __future__ import annotations

import errno

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ...datapath import loader, tc
from ...datapath.maps import Maps, NetworkRecord, PortRecord
from ..host import Host
from ..links import RTPROT_FASTNET
from ..spec import InterfaceSpec, NetworkSpec
from .. import state as statestore
from ..state import ProjectState, port_key

NUD_PERMANENT = 0x80
PROGRAM = "fn_from_container"


class EbpfBackend:
    name = "ebpf"

    def __init__(self, host: Host, project: str):
        self.host = host
        self.project = project
        self.pin_root = host.bpffs
        self.dp: loader.Datapath | None = None

    def host_mac(self, network: NetworkSpec) -> str:
        # Every port's host end answers as the gateway: frames the container sends to the
        # gateway MAC are then addressed to the device itself and enter the host stack.
        return network.gateway_mac

    def prepare(self) -> None:
        if self.dp is None:
            self.dp = loader.load_pinned(self.pin_root)
            for stale in loader.stale_pin_dirs(self.pin_root):
                loader.remove_pins(stale)

    def add_network(self, ipr: IPRoute, network: NetworkSpec) -> None:
        # Addresses of the subnet that are not (yet) containers must not follow the default
        # route out of the host.
        ipr.route("replace", dst=str(network.subnet), type="unreachable", proto=RTPROT_FASTNET)

    def remove_network(self, ipr: IPRoute, network: NetworkSpec) -> None:
        try:
            ipr.route("del", dst=str(network.subnet), type="unreachable", proto=RTPROT_FASTNET)
        except NetlinkError as e:
            if e.code not in (errno.ESRCH, errno.ENOENT):
                raise

    def attach_port(self, ipr: IPRoute, network: NetworkSpec, iface: InterfaceSpec, ifindex: int) -> None:
        assert self.dp is not None
        ipr.addr("add", index=ifindex, address=str(network.gateway), prefixlen=32)
        ipr.route(
            "replace",
            dst=f"{iface.ipv4}/32",
            oif=ifindex,
            scope=253,  # link: the container is directly on this device
            prefsrc=str(network.gateway),
            proto=RTPROT_FASTNET,
        )
        ipr.neigh("replace", dst=str(iface.ipv4), lladdr=iface.mac, ifindex=ifindex, state=NUD_PERMANENT)
        tc.attach(ipr, ifindex, self.dp.progs[PROGRAM], PROGRAM)

    def _states(self, current: ProjectState | None) -> list[ProjectState]:
        """Every project of this backend on the host, with `current` as it is in memory."""
        states = [current] if current is not None else []
        for name in statestore.projects(self.host):
            if current is not None and name == current.name:
                continue
            other = statestore.load(self.host, name)
            if other is not None and other.spec.backend == self.name:
                states.append(other)
        return states

    def sync(self, state: ProjectState | None) -> None:
        assert self.dp is not None
        networks, ports = [], []
        for st in self._states(state):
            for n in st.spec.networks.values():
                networks.append(NetworkRecord(n.net_id, n.subnet, n.gateway, n.gateway_mac, n.internal))
            for c in st.spec.containers.values():
                for i in c.interfaces:
                    ifindex = st.ports.get(port_key(c.name, i.network))
                    net = st.spec.networks.get(i.network)
                    if ifindex is not None and net is not None:
                        ports.append(PortRecord(ifindex, i.mac, i.ipv4, net.net_id))
        Maps(self.dp).sync(networks, ports)

    def teardown(self) -> None:
        """Forget this project's entries; unpin the datapath when no project uses it."""
        if self._states(None):  # the caller has already removed this project's state
            self.prepare()
            self.sync(None)
            return
        if self.dp is not None:
            self.dp.close()
            self.dp = None
        if self.pin_root.exists():
            for child in self.pin_root.iterdir():
                loader.remove_pins(child)

    def counters(self) -> dict[str, dict[str, tuple[int, int]]]:
        dp = self.dp or loader.open_pinned(self.pin_root)
        if dp is None:
            return {}
        return Maps(dp).counters()
