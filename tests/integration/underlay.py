"""Several test hosts on one underlay segment with etcd on it, for overlay networks
(test_overlay_hosts.py: hosts running `fastnet up`; test_cni.py: a host attaching through
fastnet-cni beside them). The `underlay` fixture (conftest.py) makes one per test.

    +--- fnh-..-ovl1 ---+   +--- fnh-..-ovl2 ---+        each host: harness.Host (its WORLD
    | containers        |   | containers        |        unused), up0 = its underlay address,
    | fastnet-vxlan     |   | fastnet-vxlan     |        default route via 10.99.0.254
    | up0 10.99.0.1     |   | up0 10.99.0.2     |  ...
    +--------+----------+   +--------+----------+
             |                       |
    =========+=== br0 in the underlay namespace fnu-<pid>-<tag> =
                  10.99.0.254: etcd (client port 2379), started by start_etcd(), data in tmp

    Underlay(tmp).add_host(n) / start_etcd() / stop_etcd() / teardown()
    remotes(host)           the addresses in the host's fn_ovl_remotes
    resolve(host, c, name)  what container c of the host resolves name to
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from harness import Host, netns, ns_inode, run, wait_until

UNDERLAY_NET = "10.99.0"
STORE_IP = f"{UNDERLAY_NET}.254"
STORE = f"http://{STORE_IP}:2379"
TTL = 10  # control/overlaysync.TTL


class Underlay:
    """The segment the hosts share (a Linux bridge in a namespace of its own) and etcd on it.
    `tag` keeps the namespaces of a module-wide underlay apart from a test's own."""

    def __init__(self, tmp: Path, tag: str = "ovl"):
        self.ns = f"fnu-{os.getpid()}-{tag}"
        self.tag = tag
        self.tmp = tmp
        self.etcd: subprocess.Popen | None = None
        self.hosts: list[Host] = []
        run("ip", "netns", "add", self.ns)
        run("ip", "-n", self.ns, "link", "set", "lo", "up")
        run("ip", "-n", self.ns, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.ns, "addr", "add", f"{STORE_IP}/24", "dev", "br0")
        run("ip", "-n", self.ns, "link", "set", "br0", "up")

    def start_etcd(self) -> None:
        data = self.tmp / "etcd"
        peer = f"http://{STORE_IP}:2380"
        self.log = open(self.tmp / "etcd.log", "ab")
        self.etcd = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "etcd", "--name", "n", "--data-dir", str(data),
             "--listen-client-urls", STORE, "--advertise-client-urls", STORE, "--listen-peer-urls", peer,
             "--initial-advertise-peer-urls", peer, "--initial-cluster", f"n={peer}"],
            stdout=self.log, stderr=self.log)
        from fastnet.control.store import Store, StoreError

        def ready():
            try:
                with netns_of(self.ns):
                    Store(STORE, timeout=0.5).get("/ready")
                return True
            except StoreError:
                return False

        wait_until(ready, timeout=20, interval=0.2, what="etcd to serve")

    def stop_etcd(self) -> None:
        if self.etcd is not None:
            self.etcd.terminate()
            try:
                self.etcd.wait(10)
            except subprocess.TimeoutExpired:
                self.etcd.kill()
                self.etcd.wait()
            self.etcd = None
            self.log.close()

    def store_keys(self, prefix: str) -> dict[str, str]:
        """The store's keys under `prefix` and their values, read from the underlay."""
        from fastnet.control.store import Store

        with netns_of(self.ns):
            return Store(STORE).get_prefix(prefix)[0]

    def add_host(self, n: int) -> Host:
        h = Host(f"fnh-{os.getpid()}-{self.tag}{n}", f"fnw-{os.getpid()}-{self.tag}{n}", self.tmp / f"host{n}")
        h.workdir.mkdir(parents=True, exist_ok=True)
        self.hosts.append(h)
        for ns in (h.name, h.world):
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        port = f"fnu{n}"
        run("ip", "-n", self.ns, "link", "add", port, "type", "veth", "peer", "name", "up0", "netns", h.name)
        run("ip", "-n", self.ns, "link", "set", port, "master", "br0", "up")
        run("ip", "-n", h.name, "addr", "add", f"{UNDERLAY_NET}.{n}/24", "dev", "up0")
        run("ip", "-n", h.name, "link", "set", "up0", "up")
        run("ip", "-n", h.name, "route", "add", "default", "via", STORE_IP)
        h.inode = ns_inode(h.netns_path)
        if h.dir.exists():  # a crashed run's namespace had this inode
            shutil.rmtree(h.dir, ignore_errors=True)
        return h

    def teardown(self) -> list[str]:
        problems = []
        for h in reversed(self.hosts):
            problems += [f"{h.name}: {p}" for p in h.teardown()]
        self.stop_etcd()
        run("ip", "netns", "del", self.ns, check=False)
        return problems


@contextlib.contextmanager
def netns_of(name: str):
    with netns(f"/run/netns/{name}"):
        yield


def remotes(host: Host) -> set[str]:
    """The addresses in the host's fn_ovl_remotes (read through its keeper's bpffs)."""
    from fastnet.datapath import loader
    from fastnet.datapath.maps import Maps

    keeper = host.keeper_record()
    if keeper is None:
        return set()
    dp = loader.open_pinned(Path(f"/proc/{keeper['pid']}/root{host.dir}/rt/bpf"))
    if dp is None:
        return set()
    try:
        return {str(r.ipv4) for r in Maps(dp).remotes()}
    finally:
        dp.close()


def resolve(host: Host, container: str, name: str) -> str:
    """What the resolver answers a `fastnet up` container of the host for `name`."""
    cp = host.exec(container, "dig", "+short", "+time=1", "+tries=2", name)
    return cp.stdout.strip()
