"""Plain records shared by the input model (config.py) and the desired state (spec.py, state.py):
no validation and no I/O, so that what reads state files (the agent) loads neither pydantic
nor ruamel."""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

# Containers that name no network join this one, like Docker's default bridge.
DEFAULT_NETWORK = "bridge"
DEFAULT_DRIVER = "bridge"  # of a network that names none (control/netdrivers/)
CONTAINER_MODE_PREFIX = "container:"
# Where a container came from (ContainerSpec.origin): a project file (`fastnet up`) or a
# container engine through the CNI plugin (control/cni/). Each side adds and removes only its own.
ORIGIN_FILE, ORIGIN_CNI = "file", "cni"
SOURCE_CNI = "cni"  # ProjectState.source of a project no file holds: its CNI containers' alone


@dataclass(frozen=True)
class PortMapping:
    """One ``publish`` entry: host ports forwarded to container ports.

    Single ports have ``first == last``; ``host_ip`` is ``None`` when the
    entry names no address (listen on all of them).
    """

    host_ip: IPv4Address | None
    host_port_first: int
    host_port_last: int
    container_port_first: int
    container_port_last: int
    proto: str  # "tcp" | "udp"


@dataclass(frozen=True)
class Conntrack:
    """Connection-tracking sizes and timeouts (seconds). They apply to the whole host: every
    project on it shares one datapath."""

    max_flows: int = 65536  # confirmed flows, in and out budgets together
    max_new_flows: int = 8192  # flows not confirmed yet
    inbound_percent: int = 50  # of both, for flows from outside to published ports
    owner_percent: int = 50  # of its budget, the most one published port or one container holds
    tcp_syn: int = 60
    tcp_established: int = 21600
    tcp_half_closed: int = 240  # one FIN seen (RFC 5382: at least 4 minutes)
    tcp_closing: int = 10
    udp: int = 60
    icmp: int = 30

    @property
    def timeouts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("tcp_syn", "tcp_established", "tcp_half_closed", "tcp_closing", "udp",
                                              "icmp")}


def describe_mapping(m: PortMapping) -> str:
    """A published range as users write it, e.g. 127.0.0.1:8080-8081/tcp."""
    ports = f"{m.host_port_first}" + (f"-{m.host_port_last}" if m.host_port_last != m.host_port_first else "")
    return f"{m.host_ip}:{ports}/{m.proto}" if m.host_ip else f"{ports}/{m.proto}"


def mappings_overlap(a: PortMapping, b: PortMapping) -> bool:
    """Two published ranges compete for some (address, protocol, port)."""
    return (
        a.proto == b.proto
        and (a.host_ip is None or b.host_ip is None or a.host_ip == b.host_ip)
        and a.host_port_first <= b.host_port_last
        and b.host_port_first <= a.host_port_last
    )
