"""fastnet-cni driven as a runtime drives it (cnitool is not packaged here): CNI_* in the
environment, the network configuration on stdin, the result or error object on stdout.

   HOST (fastnet-cni and fastnet run here)                          WORLD
     up0 198.51.100.1/24 ============================================ up0 198.51.100.2/24
     project shop (`fastnet up`):  front 10.62.0.0/24   web (file)
                                   + CNI containers joining front ("project": "shop")
     project fnet (CNI only):      fnet  10.61.0.0/24   CNI containers
   CNI container namespaces: fnc-<pid>-<n>, made by the test (the "runtime") with `ip netns add`

The overlay test uses two hosts of underlay.py instead (etcd at 10.99.0.254 on their segment):

   HOST 1 (10.99.0.1): `fastnet up` of shop, web1 on overlay mesh 10.60.0.0/24; fastnet-cni
                       ADDs cache to shop's mesh ("project": "shop", "network": "mesh")
   HOST 2 (10.99.0.2): fastnet-cni ADDs api and worker to mesh ("driver": "overlay", "store")
"""
from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import (HOST_UPLINK_IP, WORLD_UPLINK_IP, EchoServer, assert_no_leftovers, containers, in_netns,
                     make_socket, ping, run, tcp_echo, wait_until)
from underlay import STORE, remotes, resolve

PLUGIN = Path(sys.executable).parent / "fastnet-cni"
CNI_PATH = "/usr/lib/cni"
VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
_seq = itertools.count()


def conf(version: str = "1.0.0", **extra) -> dict:
    return {"cniVersion": version, "name": "fnet", "type": "fastnet-cni", "subnet": "10.61.0.0/24", **extra}


class Runtime:
    """The container engine's side: container namespaces and the CNI calls."""

    def __init__(self, host):
        self.host, self.namespaces = host, []
        self.added: list[tuple[dict | str, str, str, str]] = []  # DEL'd at cleanup (a failed test's)

    def netns(self) -> str:
        name = f"fnc-{os.getpid()}-{next(_seq)}"
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        return f"/run/netns/{name}"

    def call(self, command: str, config: dict | str, container: str = "", netns: str = "", ifname: str = "eth0",
             args: str = "", env: dict | None = None) -> tuple[int, dict | None]:
        e = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": container, "CNI_NETNS": netns,
             "CNI_IFNAME": ifname, "CNI_PATH": CNI_PATH, "CNI_ARGS": args, **(env or {})}
        stdin = config if isinstance(config, str) else json.dumps(config)
        cp = subprocess.run([*self.host.prefix(), str(PLUGIN)], input=stdin, capture_output=True, text=True,
                            env=e, timeout=120)
        assert cp.stderr == "", cp.stderr
        if command == "ADD" and cp.returncode == 0:
            self.added.append((config, container, netns, args))
        return cp.returncode, json.loads(cp.stdout) if cp.stdout.strip() else None

    def ok(self, command: str, config: dict, *a, **kw) -> dict | None:
        status, out = self.call(command, config, *a, **kw)
        assert status == 0, out
        return out

    def cleanup(self) -> None:
        for config, container, netns, args in self.added:
            self.call("DEL", config, container, netns, args=args)
        for name in self.namespaces:
            run("ip", "netns", "del", name, check=False)


@pytest.fixture
def rt(host):
    r = Runtime(host)
    yield r
    r.cleanup()


def address_in(netns: str, ifname: str = "eth0") -> str | None:
    out = json.loads(run("ip", "-j", "-n", Path(netns).name, "-4", "addr", "show", "dev", ifname, check=False).stdout or "[]")
    return next((f"{a['local']}/{a['prefixlen']}" for link in out for a in link["addr_info"]), None)


# -- the protocol --------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_version(rt, version):
    out = rt.ok("VERSION", {"cniVersion": version})
    assert out == {"cniVersion": version, "supportedVersions": list(VERSIONS)}


ERRORS = [
    # (what, command, config, env/args, code, words in msg)
    ("not JSON", "ADD", "{nope", {}, 6, "not JSON"),
    ("missing name", "ADD", {"cniVersion": "1.0.0", "type": "fastnet-cni", "subnet": "10.61.0.0/24"}, {}, 7, "name is missing"),
    ("unknown key", "ADD", conf(colour="red"), {}, 2, "'colour'"),
    ("old version", "ADD", conf("0.2.0"), {}, 1, "0.2.0"),
    ("CHECK before 0.4.0", "CHECK", conf("0.3.1"), {}, 1, "CHECK needs cniVersion 0.4.0"),
    ("GC before 1.1.0", "GC", conf("1.0.0"), {}, 1, "GC needs cniVersion 1.1.0"),
    ("wrong type", "ADD", conf(type="bridge"), {}, 7, "type is 'bridge'"),
    ("bad subnet", "ADD", conf(subnet="10.61.0.0/33"), {}, 7, "subnet"),
    ("no container id", "ADD", conf(), {"CNI_CONTAINERID": ""}, 4, "CNI_CONTAINERID is not set"),
    ("bad command", "FROB", conf(), {}, 4, "CNI_COMMAND"),
    ("netns missing", "ADD", conf(), {"CNI_NETNS": "/run/netns/fastnet-none"}, 4, "CNI_NETNS"),
    ("netns not a netns", "ADD", conf(), {"CNI_NETNS": "/etc/hostname"}, 4, "not a network namespace"),
    ("unknown CNI_ARGS", "ADD", conf(), {"CNI_ARGS": "FOO=1"}, 4, "unknown key 'FOO'"),
    ("no subnet", "ADD", {"cniVersion": "1.0.0", "name": "fnet", "type": "fastnet-cni"}, {}, 7, "subnet is missing"),
    ("project not up", "ADD", conf(project="shop", network="front", subnet=None), {}, 7, "subnet is missing"),
    ("overlay without store", "ADD", conf(driver="overlay"), {}, 7, 'driver overlay needs "store"'),
    # WORLD's address: nothing listens there (a refused connection: no wait for a timeout)
    ("store unreachable", "ADD", conf(driver="overlay", store=f"http://{WORLD_UPLINK_IP}:2379"), {}, 100,
     f"store http://{WORLD_UPLINK_IP}:2379 cannot be reached"),
    ("STATUS, store unreachable", "STATUS", conf("1.1.0", driver="overlay", store=f"http://{WORLD_UPLINK_IP}:2379"),
     {}, 50, f"store http://{WORLD_UPLINK_IP}:2379 cannot be reached"),
]


@pytest.mark.parametrize("what,command,config,env,code,words", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(rt, host, what, command, config, env, code, words):
    if isinstance(config, dict):
        config = {k: v for k, v in config.items() if v is not None}
    netns = rt.netns()
    env = {"CNI_CONTAINERID": "c1", "CNI_NETNS": netns, **env}
    status, out = rt.call(command, config, env=env)
    assert status == 1
    assert out["code"] == code and words in out["msg"], out
    assert "\n" not in out["msg"]
    assert set(out) <= {"cniVersion", "code", "msg", "details"}
    assert address_in(netns) is None
    assert_no_leftovers(host)


@pytest.mark.parametrize("version", VERSIONS)
def test_add_check_del(rt, host, version):
    netns = rt.netns()
    out = rt.ok("ADD", conf(version), "c1", netns)
    assert out["cniVersion"] == version
    ip = out["ips"][0]
    assert ip["address"] == "10.61.0.2/24" and ip["gateway"] == "10.61.0.1"
    assert ("version" in ip) == (version < "1.0.0"), ip
    assert out["interfaces"][ip["interface"]] == {"name": "eth0", "mac": "02:fa:0a:3d:00:02", "sandbox": netns}
    assert out["dns"]["nameservers"] == ["127.0.0.11"]
    assert address_in(netns) == "10.61.0.2/24"
    # the gateway (the host) answers
    assert in_netns(netns, "ping", "-c1", "-W2", "10.61.0.1", check=False).returncode == 0
    view = host.ps()["projects"]["fnet"]["containers"]["cni-c1"]
    assert view["origin"] == "cni"
    if version >= "0.4.0":
        rt.ok("CHECK", {**conf(version), "prevResult": out}, "c1", netns)
        status, err = rt.call("CHECK", {**conf(version), "prevResult": out}, "c2", netns)
        assert status == 1 and err["code"] == 3
    status, err = rt.call("ADD", conf(version), "c1", netns)  # ADD twice without DEL
    assert status == 1 and err["code"] == 100 and "DEL it first" in err["msg"]
    for _ in range(2):  # DEL is idempotent
        rt.ok("DEL", {**conf(version), "prevResult": out}, "c1", netns)
    assert address_in(netns) is None
    assert_no_leftovers(host)


def test_del_after_netns_gone_and_without_state(rt, host):
    netns = rt.netns()
    rt.ok("ADD", conf(), "c1", netns)
    run("ip", "netns", "del", Path(netns).name)
    rt.ok("DEL", conf(), "c1", netns)
    assert_no_leftovers(host)
    rt.ok("DEL", conf(), "never-added", "/run/netns/gone")  # no state at all
    assert_no_leftovers(host)


def test_parallel_calls(rt, host):
    """A runtime starting eight containers at once, then removing each of them twice at once
    (a DEL retried while the first still runs): every ADD gets an address of its own, every
    DEL succeeds, and nothing is left."""
    from concurrent.futures import ThreadPoolExecutor

    spaces = {f"p{i}": rt.netns() for i in range(8)}
    with ThreadPoolExecutor(8) as pool:
        added = dict(zip(spaces, pool.map(lambda c: rt.call("ADD", conf(), c, spaces[c]), spaces)))
    assert all(status == 0 for status, _ in added.values()), added
    addresses = {c: out["ips"][0]["address"] for c, (_, out) in added.items()}
    assert len(set(addresses.values())) == 8, addresses
    assert {c: address_in(spaces[c]) for c in spaces} == addresses
    assert len(host.ps()["projects"]["fnet"]["containers"]) == 8
    with ThreadPoolExecutor(16) as pool:
        deleted = list(pool.map(lambda c: rt.call("DEL", conf(), c, spaces[c]), [*spaces, *spaces]))
    assert all(status == 0 for status, _ in deleted), deleted
    assert_no_leftovers(host)


def test_failed_add_leaves_nothing(rt, host):
    """A port a host process holds: the preflight of `up` refuses it; nothing is left."""
    holder = make_socket(host.netns_path, socket.SOCK_STREAM)
    with holder:
        holder.bind(("0.0.0.0", 0))
        port = holder.getsockname()[1]
        holder.listen()
        c = {**conf(), "capabilities": {"portMappings": True},
             "runtimeConfig": {"portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]}}
        netns = rt.netns()
        status, err = rt.call("ADD", c, "c1", netns)
    assert status == 1 and err["code"] == 100 and f"port {port} is in use" in err["msg"], err
    assert address_in(netns) is None
    assert_no_leftovers(host)


def test_gc_and_status(rt, host):
    ns1, ns2 = rt.netns(), rt.netns()
    v11 = conf("1.1.0")
    rt.ok("STATUS", v11)
    rt.ok("ADD", v11, "c1", ns1)
    rt.ok("ADD", v11, "c2", ns2)
    rt.ok("GC", {**v11, "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]})
    assert address_in(ns1) == "10.61.0.2/24" and address_in(ns2) is None
    assert set(host.ps()["projects"]["fnet"]["containers"]) == {"cni-c1"}
    status, err = rt.call("CHECK", v11, "c2", ns2)
    assert status == 1 and err["code"] == 3
    rt.ok("CHECK", v11, "c1", ns1)
    rt.ok("STATUS", v11)
    rt.ok("GC", {**v11, "cni.dev/valid-attachments": []})
    assert_no_leftovers(host)
    status, err = rt.call("STATUS", {k: v for k, v in conf("1.1.0").items() if k != "subnet"})
    assert status == 1 and err["code"] == 50 and "not up" in err["msg"], err


def test_delegated_ipam(rt, host, tmp_path):
    c = {"cniVersion": "1.0.0", "name": "fnet", "type": "fastnet-cni",
         "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                  "ranges": [[{"subnet": "10.63.0.0/24", "rangeStart": "10.63.0.50", "gateway": "10.63.0.1"}]]}}
    ns1, ns2 = rt.netns(), rt.netns()
    out = rt.ok("ADD", c, "c1", ns1)
    assert out["ips"][0]["address"] == "10.63.0.50/24"
    rt.ok("ADD", c, "c2", ns2)
    assert address_in(ns2) == "10.63.0.51/24"
    assert in_netns(ns1, "ping", "-c1", "-W2", "10.63.0.51", check=False).returncode == 0
    rt.ok("DEL", c, "c1", ns1)
    rt.ok("DEL", c, "c2", ns2)
    assert not [p for p in (tmp_path / "ipam" / "fnet").glob("10.*")]  # host-local released both
    assert_no_leftovers(host)


SHOP = """\
name: shop
uplink: up0
networks:
  front:
    subnet: 10.62.0.0/24
containers:
  web:
    networks: [front]
"""


def test_with_a_fastnet_up_project(rt, host):
    """CNI containers join a network of a `fastnet up` project: one datapath, both ways, names,
    published ports from the host and from the outside; up/down of the file keep them."""
    cp = host.up(SHOP)
    c = {"cniVersion": "1.0.0", "name": "shopnet", "type": "fastnet-cni", "project": "shop", "network": "front",
         "capabilities": {"portMappings": True, "aliases": True},
         "runtimeConfig": {"portMappings": [{"hostPort": 8090, "containerPort": 9000, "protocol": "tcp"},
                                            {"hostPort": 8091, "containerPort": 9000, "protocol": "tcp",
                                             "hostIP": "127.0.0.1"}],
                           "aliases": {"shopnet": ["api"]}}}
    netns = rt.netns()
    out = rt.ok("ADD", c, "c1", netns, args="IgnoreUnknown=1;K8S_POD_NAME=api-1")
    cni_ip = out["ips"][0]["address"].split("/")[0]
    web_ip = containers(host, "shop")["web"].ip("front")
    ps = host.ps()["projects"]["shop"]["containers"]
    assert (ps["web"]["origin"], ps["api-1"]["origin"]) == ("file", "cni")
    web_ns = ps["web"]["netns"]
    assert in_netns(netns, "ping", "-c1", "-W2", web_ip, check=False).returncode == 0
    with EchoServer(web_ns, port=7000), EchoServer(netns, port=9000):
        assert tcp_echo(netns, web_ip, 7000) == "ok"
        assert tcp_echo(web_ns, cni_ip, 9000) == "ok"
        assert tcp_echo(host.netns_path, "127.0.0.1", 8091) == "ok"  # a host process, 127.0.0.1 only
        assert tcp_echo(host.netns_path, HOST_UPLINK_IP, 8090) == "ok"
        assert tcp_echo(host.world_path, HOST_UPLINK_IP, 8090) == "ok"  # from the outside
        assert tcp_echo(host.world_path, HOST_UPLINK_IP, 8091) != "ok"
    # the resolver answers the CNI container's name and alias to the file's container
    for name in ("api-1", "api"):
        r = host.exec("web", "python3", "-c", f"import socket; print(socket.gethostbyname('{name}'))")
        assert r.stdout.strip() == cni_ip, r
    # up again, and down: the CNI container stays
    host.up(cp.path)
    cp_down = host.down(cp.path)
    assert "kept the containers attached through CNI (api-1)" in cp_down.stderr
    assert set(host.ps()["projects"]["shop"]["containers"]) == {"api-1"}
    assert address_in(netns) == out["ips"][0]["address"]
    rt.ok("CHECK", {**c, "prevResult": out}, "c1", netns)
    rt.ok("DEL", c, "c1", netns, args="IgnoreUnknown=1;K8S_POD_NAME=api-1")
    wait_until(lambda: not host.projects(), what="project shop gone")
    run("ip", "netns", "del", Path(netns).name)  # the runtime's own, seen by `fastnet ps` meanwhile
    assert_no_leftovers(host)


# -- an overlay network across hosts ------------------------------------------------------------
MESH_FILE = f"""\
name: shop
uplink: up0
store: {STORE}
networks:
  mesh: {{driver: overlay, subnet: 10.60.0.0/24}}
containers:
  web1: {{networks: [mesh]}}
"""
MESH_CNI = {"cniVersion": "1.0.0", "name": "mesh", "type": "fastnet-cni", "driver": "overlay", "store": STORE,
            "subnet": "10.60.0.0/24", "capabilities": {"aliases": True}}
# seconds from DEL's start: the agent withdraws the endpoint (DEL's reload signal, or its stop
# with the host's last project, which takes about 2.5 s here), well before the lease's TTL (10 s)
# would have expired it
ENDPOINT_GONE_WITHIN = 5.0


def test_overlay_across_hosts(underlay):
    """A container attached through CNI on host 2 and one from `fastnet up` on host 1 share
    overlay network mesh: each reaches the other by address (ICMP, TCP payload) and by name;
    addresses are claimed in the store like `up`'s; DEL withdraws the endpoint from host 1's
    fn_ovl_remotes (and the claim from the store), whether other CNI containers stay on host 2
    (the agent's reload) or it was the last (the agent stops and revokes its lease). On host 1 a
    CNI container also joins the file's project on mesh, reached from host 2 and gone with DEL."""
    underlay.start_etcd()
    h1, h2 = underlay.add_host(1), underlay.add_host(2)
    h1.up(MESH_FILE)
    web1 = containers(h1, "shop")["web1"]
    rt = Runtime(h2)
    try:
        rt.ok("STATUS", {**MESH_CNI, "cniVersion": "1.1.0"})  # the store answers
        pods = {}
        for name in ("api", "worker"):
            netns = rt.netns()
            out = rt.ok("ADD", MESH_CNI, name, netns, args=f"IgnoreUnknown=1;K8S_POD_NAME={name}")
            pods[name] = (netns, out["ips"][0]["address"].split("/")[0])
        api_ns, api_ip = pods["api"]
        assert {ip for _, ip in pods.values()} & {web1.ip("mesh")} == set(), "two hosts gave one address"
        claims = underlay.store_keys("/fastnet/v1/net/mesh/ip/")
        assert {json.loads(claims[f"/fastnet/v1/net/mesh/ip/{ip}"])["container"] for _, ip in pods.values()} == {
            "api", "worker"}
        assert h2.ps()["projects"]["mesh"]["containers"]["api"]["origin"] == "cni"
        link = json.loads(in_netns(api_ns, "ip", "-j", "link", "show", "eth0").stdout)
        assert link[0]["mtu"] == 1450  # room for VXLAN's 50 bytes, as `up` leaves it
        wait_until(lambda: remotes(h1) == {ip for _, ip in pods.values()}, timeout=3, what="host 1 to learn api, worker")
        wait_until(lambda: remotes(h2) == {web1.ip("mesh")}, timeout=3, what="host 2 to learn web1")

        assert ping(h1, "web1", api_ip), "web1 (host 1) cannot ping api (host 2, CNI)"
        assert in_netns(api_ns, "ping", "-n", "-c1", "-W2", web1.ip("mesh"), check=False).returncode == 0
        with EchoServer(web1.netns, port=7000), EchoServer(api_ns, port=7000):
            assert tcp_echo(web1.netns, api_ip, 7000, size=256 * 1024) == "ok", "web1 -> api TCP"
            assert tcp_echo(api_ns, web1.ip("mesh"), 7000, size=256 * 1024) == "ok", "api -> web1 TCP"
        assert resolve(h1, "web1", "api") == api_ip
        # the result's nameserver, fastnet's resolver, answers in the CNI container too
        dig = in_netns(api_ns, "dig", "@127.0.0.11", "+short", "+time=1", "+tries=2", "web1", check=False)
        assert dig.stdout.strip() == web1.ip("mesh"), dig

        # on host 1, a CNI container joins the overlay network of the `fastnet up` project there
        rt1 = Runtime(h1)
        try:
            cache_ns = rt1.netns()
            joined = {**MESH_CNI, "name": "shopmesh", "project": "shop", "network": "mesh"}
            del joined["subnet"]
            out = rt1.ok("ADD", joined, "cache", cache_ns, args="IgnoreUnknown=1;K8S_POD_NAME=cache")
            cache_ip = out["ips"][0]["address"].split("/")[0]
            assert cache_ip not in {web1.ip("mesh"), *(ip for _, ip in pods.values())}
            assert {n: c["origin"] for n, c in h1.ps()["projects"]["shop"]["containers"].items()} == {
                "web1": "file", "cache": "cni"}
            wait_until(lambda: cache_ip in remotes(h2), timeout=3, what="host 2 to learn cache")
            assert in_netns(api_ns, "ping", "-n", "-c1", "-W2", cache_ip, check=False).returncode == 0
            assert in_netns(cache_ns, "ping", "-n", "-c1", "-W2", web1.ip("mesh"), check=False).returncode == 0
            rt1.ok("DEL", joined, "cache", cache_ns, args="IgnoreUnknown=1;K8S_POD_NAME=cache")
            wait_until(lambda: cache_ip not in remotes(h2), timeout=ENDPOINT_GONE_WITHIN, what="cache to leave host 2")
            assert set(h1.ps()["projects"]["shop"]["containers"]) == {"web1"}
        finally:
            rt1.cleanup()

        # DEL with another CNI container left on host 2: the agent stays and withdraws api
        started = time.monotonic()
        rt.ok("DEL", MESH_CNI, "api", api_ns, args="IgnoreUnknown=1;K8S_POD_NAME=api")
        wait_until(lambda: api_ip not in remotes(h1), timeout=ENDPOINT_GONE_WITHIN + 5, interval=0.05,
                   what="api to leave host 1's fn_ovl_remotes")
        assert time.monotonic() - started < ENDPOINT_GONE_WITHIN
        assert f"/fastnet/v1/net/mesh/ip/{api_ip}" not in underlay.store_keys("/fastnet/v1/net/mesh/ip/")
        assert api_ip not in resolve(h1, "web1", "api")  # not ours to answer any more: forwarded upstream
        # DEL of the last: the project, the VXLAN device and the agent go; so does worker
        worker_ns, _ = pods["worker"]
        started = time.monotonic()
        rt.ok("DEL", MESH_CNI, "worker", worker_ns, args="IgnoreUnknown=1;K8S_POD_NAME=worker")
        wait_until(lambda: remotes(h1) == set(), timeout=ENDPOINT_GONE_WITHIN + 5, interval=0.05,
                   what="worker to leave host 1's fn_ovl_remotes")
        assert time.monotonic() - started < ENDPOINT_GONE_WITHIN
        assert set(underlay.store_keys("/fastnet/v1/net/mesh/ip/")) == {f"/fastnet/v1/net/mesh/ip/{web1.ip('mesh')}"}
        assert h2.projects() == []
    finally:
        rt.cleanup()
    assert_no_leftovers(h2)
