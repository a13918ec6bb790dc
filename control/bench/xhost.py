"""The cross-host testbeds of `fastnet bench` (the xhost_* metrics): two simulated hosts on one
underlay segment, one container on each, measured from the container of host 1 to the one of
host 2. Each variant builds its own pair, with it and torn down with it.

    +---- fnb-<pid>-<v>-x1 ----+                 +---- fnb-<pid>-<v>-x2 ----+
    | container 1  (wired as   |                 | container 2              |
    |  the variant does it)    |                 |                          |
    | up0 10.98.0.1/24         |                 | up0 10.98.0.2/24         |
    +------------+-------------+                 +-------------+------------+
                 |                                             |
    =============+==== br0 of UNDERLAY fnbu-<pid>-<v> =========+=====  10.98.0.254
                              (ebpf: etcd on :2379)

    ebpf      each host runs `fastnet up` of its own file naming one overlay network: fastnet's
              VXLAN in eBPF (one external VXLAN device per host, tunnel keys set by its
              programs); etcd runs in UNDERLAY as a plain process, its data in the bench's
              temporary directory.
    iptables  the same hosts built the way Docker's overlay driver builds them (the reference
              column: fastnet's iptables backend has no overlay). Per host a namespace for the
              network (Docker's "1-<id>" sandbox) with a bridge holding the gateway address and
              a kernel VXLAN device (VNI 4096, UDP 4789, learning off, `proxy`: it answers ARP
              from its neighbour table) created in the host, so that its UDP socket and the
              outer routing stay there, then moved in; the container's veth on the bridge; MTU
              1450 everywhere. The remote container's MAC is a permanent FDB entry (dst: the
              other host) and its address a permanent neighbour entry on the VXLAN device, which
              is what Docker's driver writes from what its gossip learns.
    direct    the same hosts and containers without an overlay: each host routes its
              container (a veth, MTU 1450 like the others so that segments are the same size)
              and the other container's subnet via the other host (Flannel's host-gw). The
              cross-host path with nothing encapsulated: ebpf/direct is what the overlay costs.
    nftables  none (an nft map changes nothing on this path): n/a.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .. import procs, sandbox
from ..netdrivers.overlay import VXLAN_HLEN
from ..store import PREFIX, Store, StoreError
from . import tools
from .variants import BenchError, Endpoint, FastnetHost, add_netns, del_netns, ns_path, run

UNDERLAY_IP = "10.98.0.254"
HOST_IPS = ("10.98.0.1", "10.98.0.2")
MTU = 1500 - VXLAN_HLEN
VNI, VXLAN_PORT = 4096, 4789
ETCD_URL = f"http://{UNDERLAY_IP}:2379"
OVERLAY_SUBNET = "10.77.10.0/24"  # ebpf
DOCKER_SUBNET = "10.77.11"  # iptables: .1 the bridge, .2 and .3 the containers
ROUTED_SUBNETS = ("10.77.12", "10.77.13")  # direct: one /24 per host, .1 the host, .2 the container
READY_TIMEOUT = 15.0


@dataclass
class HostPair:
    """UNDERLAY (a bridge) and two host namespaces with their up0 on it; subclasses put the
    containers in and return the endpoint from container 1 to container 2."""

    tag: str
    variant: str
    workdir: Path
    made: list[str] = field(default_factory=list)  # namespaces, deleted in reverse order
    endpoint: Endpoint | None = None

    def netns(self, name: str) -> str:
        add_netns(name)
        self.made.append(name)
        return name

    def host_name(self, i: int) -> str:
        return f"fnb-{self.tag}-{self.variant}-x{i}"

    def setup(self) -> None:
        self.underlay = self.netns(f"fnbu-{self.tag}-{self.variant}")
        run("ip", "-n", self.underlay, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.underlay, "addr", "add", f"{UNDERLAY_IP}/24", "dev", "br0")
        run("ip", "-n", self.underlay, "link", "set", "br0", "up")
        self.hosts = [self.make_host(i) for i in (1, 2)]
        for i, host in enumerate(self.hosts, 1):
            port = f"u{i}"
            run("ip", "-n", self.underlay, "link", "add", port, "type", "veth", "peer", "name", "up0", "netns", host)
            run("ip", "-n", self.underlay, "link", "set", port, "master", "br0", "up")
            run("ip", "-n", host, "addr", "add", f"{HOST_IPS[i - 1]}/24", "dev", "up0")
            run("ip", "-n", host, "link", "set", "up0", "up")
            run("ip", "-n", host, "route", "add", "default", "via", UNDERLAY_IP)
        self.endpoint = self.build()
        wait_reachable(self.endpoint, self.variant)

    def make_host(self, i: int) -> str:
        return self.netns(self.host_name(i))

    def build(self) -> Endpoint:
        raise NotImplementedError

    def datapath_hosts(self) -> list[str]:
        """The host namespaces where fastnet's programs run (bpf_stats_ns_per_xhost_pkt)."""
        return []

    def teardown(self) -> list[str]:
        for name in reversed(self.made):
            del_netns(name)
        return []


def wait_reachable(ep: Endpoint, variant: str) -> None:
    """Container 1 pings container 2 until it answers: the overlay's tables (ebpf: filled by the
    agents from etcd's watch) are complete before the first measurement."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        cp = procs.run(tools.in_ns(ep.client_ns, "ping", "-c", 1, "-W", 1, ep.ip), capture_output=True, text=True)
        if cp.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{variant} cross-host: {ep.ip} does not answer a ping from the other host's container "
                             f"after {READY_TIMEOUT:.0f} s")


# ---- ebpf: fastnet's overlay network, etcd in the underlay ------------------------------------
class Etcd:
    """etcd 3.4 as a plain single-node process in a namespace, its data and log in a directory
    of the bench's: the overlay's store for the run. (The integration tests keep their own, which
    restarts on the same data dir.)"""

    def __init__(self, netns: str, ip: str, datadir: Path):
        self.netns, self.ip, self.datadir = netns, ip, datadir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.ip}:2379"

    def start(self) -> None:
        peer = f"http://{self.ip}:2380"
        self.datadir.mkdir(parents=True, exist_ok=True)
        # a log file, not a pipe: nobody reads etcd's chatter, and a full pipe would stall it
        with open(self.datadir.with_suffix(".log"), "ab") as log:
            self.proc = procs.popen(
                tools.in_ns(ns_path(self.netns), "etcd", "--name", "bench", "--data-dir", self.datadir / "data",
                            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                            "--initial-cluster", f"bench={peer}", "--log-level", "warn"),
                stdout=log, stderr=log, start_new_session=True)
        self.wait_ready()

    def wait_ready(self) -> None:
        """Until a read answers: etcd listens before it has elected itself, and a request in
        that window waits for the election instead of failing."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                log = self.datadir.with_suffix(".log").read_text(errors="replace").strip().splitlines()
                raise BenchError(f"etcd exited {self.proc.returncode}: {log[-1] if log else ''}")
            try:
                with sandbox.entered(Path(ns_path(self.netns))):
                    Store(self.url, timeout=0.5).get(f"{PREFIX}/ready")
                return
            except StoreError:
                if time.monotonic() > deadline:
                    raise BenchError(f"etcd at {self.url} does not answer after {READY_TIMEOUT:.0f} s") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # its data is thrown away with the directory
        self.proc.wait()
        self.proc = None


def overlay_yaml(i: int) -> str:
    return (f"name: benchx\nuplink: up0\nstore: {ETCD_URL}\nnetworks:\n"
            f"  mesh: {{driver: overlay, subnet: {OVERLAY_SUBNET}}}\ncontainers:\n  x{i}: {{networks: [mesh]}}\n")


@dataclass
class OverlayPair(HostPair):
    fastnet_hosts: list[FastnetHost] = field(default_factory=list)
    etcd: Etcd | None = None

    def make_host(self, i: int) -> str:
        h = FastnetHost(self.tag, "ebpf", self.workdir, name=f"{self.variant}-x{i}", project="benchx")
        self.fastnet_hosts.append(h)
        h.create_host()
        return h.host

    def build(self) -> Endpoint:
        self.etcd = Etcd(self.underlay, UNDERLAY_IP, self.workdir / f"etcd-{self.variant}")
        self.etcd.start()
        # both at once, as two real hosts would: most of a first `up` is compiling the datapath
        # (seconds), and claiming addresses by compare-and-swap is made for concurrent hosts
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda ih: ih[1].up("benchx", overlay_yaml(ih[0])), enumerate(self.fastnet_hosts, 1)))
        one, two = self.fastnet_hosts
        return Endpoint(one.container_netns("x1"), two.container_netns("x2"), two.container_ip("x2"))

    def datapath_hosts(self) -> list[str]:
        return [h.host for h in self.fastnet_hosts]

    def teardown(self) -> list[str]:
        """`fastnet down` on both hosts while the store still answers (they release their
        addresses and leases there), then etcd, then the underlay."""
        problems = []
        try:
            for h in reversed(self.fastnet_hosts):
                try:
                    problems += h.teardown()
                except Exception as exc:  # noted; the other host and etcd go whatever happens
                    problems.append(f"{h.name}: teardown: {exc}")
        finally:
            if self.etcd is not None:
                self.etcd.stop()
            problems += super().teardown()
        return problems


# ---- iptables column: Docker's overlay driver by hand ------------------------------------------
def docker_mac(ip: str) -> str:
    """Docker's container MAC: 02:42 and the IPv4 address (known to the other hosts from the
    address alone)."""
    return "02:42:" + ":".join(f"{int(b):02x}" for b in ip.split("."))


@dataclass
class DockerOverlayPair(HostPair):
    def build(self) -> Endpoint:
        ips = [f"{DOCKER_SUBNET}.{i + 1}" for i in (1, 2)]
        containers = []
        for i, host in enumerate(self.hosts, 1):
            sbox = self.netns(f"fnbs-{self.tag}-{self.variant}-x{i}")
            ctr = self.netns(f"fnbc-{self.tag}-{self.variant}-x{i}")
            containers.append(ctr)
            run("ip", "-n", sbox, "link", "add", "br0", "mtu", MTU, "type", "bridge")
            run("ip", "-n", sbox, "addr", "add", f"{DOCKER_SUBNET}.1/24", "dev", "br0")
            run("ip", "-n", host, "link", "add", "vxlan0", "mtu", MTU, "type", "vxlan", "id", VNI, "dstport",
                VXLAN_PORT, "local", HOST_IPS[i - 1], "nolearning", "proxy")
            run("ip", "-n", host, "link", "set", "vxlan0", "netns", sbox)
            run("ip", "-n", sbox, "link", "set", "vxlan0", "master", "br0", "up")
            run("ip", "-n", sbox, "link", "add", "veth0", "mtu", MTU, "type", "veth", "peer", "name", "eth0",
                "netns", ctr)
            run("ip", "-n", sbox, "link", "set", "veth0", "master", "br0", "up")
            run("ip", "-n", sbox, "link", "set", "br0", "up")
            run("ip", "-n", ctr, "link", "set", "eth0", "address", docker_mac(ips[i - 1]))
            run("ip", "-n", ctr, "addr", "add", f"{ips[i - 1]}/24", "dev", "eth0")
            run("ip", "-n", ctr, "link", "set", "eth0", "up")
        for i in (1, 2):
            sbox, other = f"fnbs-{self.tag}-{self.variant}-x{i}", 2 - i  # other: 0-based, the other host
            mac = docker_mac(ips[other])
            run("ip", "-n", sbox, "neigh", "add", ips[other], "lladdr", mac, "dev", "vxlan0", "nud", "permanent")
            run("bridge", "-n", sbox, "fdb", "add", mac, "dev", "vxlan0", "dst", HOST_IPS[other], "self", "permanent")
        return Endpoint(ns_path(containers[0]), ns_path(containers[1]), ips[1])


# ---- direct: routed over the underlay, nothing encapsulated -------------------------------------
@dataclass
class RoutedPair(HostPair):
    def build(self) -> Endpoint:
        containers = []
        for i, host in enumerate(self.hosts, 1):
            net, other = ROUTED_SUBNETS[i - 1], ROUTED_SUBNETS[2 - i]
            ctr = self.netns(f"fnbc-{self.tag}-{self.variant}-x{i}")
            containers.append(ctr)
            sandbox.write_sysctl(Path(ns_path(host)), "net/ipv4/ip_forward", "1")
            run("ip", "-n", host, "link", "add", "c0", "mtu", MTU, "type", "veth", "peer", "name", "eth0", "netns", ctr)
            run("ip", "-n", host, "addr", "add", f"{net}.1/24", "dev", "c0")
            run("ip", "-n", host, "link", "set", "c0", "up")
            run("ip", "-n", host, "route", "add", f"{other}.0/24", "via", HOST_IPS[2 - i])
            run("ip", "-n", ctr, "addr", "add", f"{net}.2/24", "dev", "eth0")
            run("ip", "-n", ctr, "link", "set", "eth0", "up")
            run("ip", "-n", ctr, "route", "add", "default", "via", f"{net}.1")
        return Endpoint(ns_path(containers[0]), ns_path(containers[1]), f"{ROUTED_SUBNETS[1]}.2")


PAIRS = {"ebpf": OverlayPair, "iptables": DockerOverlayPair, "direct": RoutedPair}


def make_pair(variant: str, tag: str, workdir: Path) -> HostPair | None:
    """The variant's cross-host testbed; None where the xhost_* metrics do not apply."""
    cls = PAIRS.get(variant)
    return cls(tag, variant, workdir) if cls else None
