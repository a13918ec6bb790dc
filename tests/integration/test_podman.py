"""podman 4.3 (the distribution's, CNI backend) on a fastnet network, end to end, no image pulled.

   HOST (podman, conmon and fastnet-cni run here: `nsenter --target HOLDER --mount --net`)
     up0 198.51.100.1/24 ======================================== WORLD up0 198.51.100.2/24
     fnet 10.61.0.0/24: a  -p 127.0.0.1:8080:80    b  -p 8081:80    (busybox httpd, --rootfs)

HOLDER is a process in HOST's network namespace holding a private mount namespace for podman:
the cgroup2 `unified` mount unmounted (crun refuses the hybrid layout), tmpfs over /run/netns
and /var/lib/cni (podman's namespaces and libcni's cache stay off the real host). podman's own
settings are in its containers.conf: the CNI backend, a plugin directory holding fastnet-cni and
the distribution's plugins, cgroupfs, file events, ulimits this machine allows, and no port
reservation (fastnet reserves published ports itself, through its bind hooks:
test_podman_port_reservation_is_refused). The conflist declares the `ips` capability beside
portMappings and aliases (CAPABILITIES: what podman's `network reload` does without it).
"""
from __future__ import annotations

import shutil
import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from harness import HOST_UPLINK_IP, assert_no_leftovers, run, wait_until

PLUGIN = Path(sys.executable).parent / "fastnet-cni"
DISTRIBUTION_PLUGINS = Path("/usr/lib/cni")
BUSYBOX = Path("/bin/busybox")  # busybox-static
CGROUP_ROOT = Path("/sys/fs/cgroup")

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
enable_port_reservation = {port_reservation}
[network]
network_backend = "cni"
network_config_dir = "{dir}/cni"
cni_plugin_dirs = ["{dir}/plugins"]
"""
# "ips": podman 4.3 re-ADDs a container with its old address on `network reload`, and then
# (containers/common libnetwork/cni/run.go, Setup) sets the first plugin's capabilities to
# {"ips": true} unless it declares "ips" already: the runtime then sends that plugin no
# runtimeConfig, and fastnet-cni, the only plugin, would get no portMappings (nor aliases).
# podman's own conflists are not hit: their first plugin (bridge) declares "ips" and portmap
# comes later. test_podman_reload_without_ips_loses_published_ports shows the difference.
CAPABILITIES = '{"portMappings": true, "aliases": true, "ips": true}'
CONFLIST = """\
{"cniVersion": "1.0.0", "name": "fnet",
 "plugins": [{"type": "fastnet-cni", "subnet": "10.61.0.0/24", "capabilities": %s}]}
"""


class Podman:
    def __init__(self, host, workdir: Path, capabilities: str = CAPABILITIES, port_reservation: bool = False):
        self.host, self.dir = host, workdir
        (workdir / "cni").mkdir()
        (workdir / "plugins").mkdir()
        (workdir / "cni" / "fnet.conflist").write_text(CONFLIST % capabilities)
        (workdir / "containers.conf").write_text(CONTAINERS_CONF.format(dir=workdir, port_reservation=str(port_reservation).lower()))
        (workdir / "plugins" / "fastnet-cni").symlink_to(PLUGIN)
        for p in DISTRIBUTION_PLUGINS.iterdir():
            if p.name != PLUGIN.name:  # setup links fastnet-cni there too: this venv's is tested
                (workdir / "plugins" / p.name).symlink_to(p)
        rootfs = workdir / "rootfs"
        for d in ("bin", "etc", "www"):
            (rootfs / d).mkdir(parents=True)
        shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
        for tool in ("sh", "httpd", "wget", "nslookup", "cat"):
            (rootfs / "bin" / tool).symlink_to("busybox")
        self.rootfs = rootfs
        self.holder = subprocess.Popen(
            ["nsenter", f"--net={host.netns_path}", "unshare", "-m", "--propagation", "private", "sh", "-c",
             "umount /sys/fs/cgroup/unified 2>/dev/null; mount -t tmpfs fastnet-test /run/netns && "
             "mkdir -p /var/lib/cni && mount -t tmpfs fastnet-test /var/lib/cni && echo ready && exec sleep infinity"],
            stdout=subprocess.PIPE, text=True)
        assert self.holder.stdout.readline().strip() == "ready"

    def __call__(self, *args: str, check: bool = True, timeout: float = 120):
        cmd = ["nsenter", f"--target={self.holder.pid}", "--mount", "--net", "env", f"CONTAINERS_CONF={self.dir}/containers.conf",
               "podman", "--storage-driver", "vfs", "--root", f"{self.dir}/root", "--runroot", f"{self.dir}/runroot",
               "--tmpdir", f"{self.dir}/tmp", *args]
        return run(*cmd, check=check, timeout=timeout)

    def close(self) -> None:
        if self.holder.poll() is None:
            self("rm", "-a", "-f", "-t", "0", check=False)
            self.holder.kill()
            self.holder.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        for d in CGROUP_ROOT.glob("*/libpod_parent"):  # podman's cgroupfs leftovers, bottom up
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [d]:
                with contextlib.suppress(OSError):
                    sub.rmdir()


@pytest.fixture
def podman(host, request):
    # podman wants a runroot under 50 characters; a test may pass other settings (Podman's keywords)
    p = Podman(host, Path(tempfile.mkdtemp(prefix="fnpm-")), **getattr(request, "param", {}))
    yield p
    p.close()


def httpd(podman, name: str, *publish: str) -> None:
    (podman.rootfs / "www" / "index.html").write_text("hello from fastnet\n")
    args = [a for p in publish for a in ("-p", p)]
    podman("run", "-d", "--name", name, "--network", "fnet", *args, "--rootfs", str(podman.rootfs),
           "/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www")


def wget(host_ns: str, url: str) -> str:
    cp = run("nsenter", f"--net={host_ns}", str(BUSYBOX), "timeout", "5", str(BUSYBOX), "wget", "-qO-", url, check=False)
    return cp.stdout if cp.returncode == 0 else f"failed ({cp.returncode}): {cp.stderr.strip()}"


def test_podman_on_a_fastnet_network(host, podman):
    httpd(podman, "a", "127.0.0.1:8080:80")
    httpd(podman, "b", "8081:80")
    ps = host.ps()["projects"]["fnet"]["containers"]
    assert {n: c["origin"] for n, c in ps.items()} == {"a": "cni", "b": "cni"}
    assert ps["a"]["publish"] == ["127.0.0.1:8080/tcp->80"] and ps["b"]["publish"] == ["8081/tcp->80"]
    # names resolve between them through fastnet's resolver (podman writes it into resolv.conf)
    assert "nameserver 127.0.0.11" in podman("exec", "b", "cat", "/etc/resolv.conf").stdout
    assert podman("exec", "b", "wget", "-qO-", "http://a/").stdout == "hello from fastnet\n"
    assert podman("exec", "a", "wget", "-qO-", "http://b/").stdout == "hello from fastnet\n"
    # published: 127.0.0.1 only for a, every address for b; a host process and the outside
    assert wget(host.netns_path, "http://127.0.0.1:8080/") == "hello from fastnet\n"
    assert wget(host.netns_path, f"http://{HOST_UPLINK_IP}:8081/") == "hello from fastnet\n"
    assert wget(host.world_path, f"http://{HOST_UPLINK_IP}:8081/") == "hello from fastnet\n"
    assert wget(host.world_path, f"http://{HOST_UPLINK_IP}:8080/").startswith("failed")
    addresses = {n: c["networks"]["fnet"]["ipv4"] for n, c in ps.items()}
    # reload: DEL then ADD of every container (the old address in CNI_ARGS IP, the published
    # ports in runtimeConfig); addresses, names and published ports stay
    podman("network", "reload", "--all")
    ps = host.ps()["projects"]["fnet"]["containers"]
    assert {n: c["networks"]["fnet"]["ipv4"] for n, c in ps.items()} == addresses
    assert ps["a"]["publish"] == ["127.0.0.1:8080/tcp->80"] and ps["b"]["publish"] == ["8081/tcp->80"]
    assert podman("exec", "b", "wget", "-qO-", "http://a/").stdout == "hello from fastnet\n"
    assert wget(host.netns_path, "http://127.0.0.1:8080/") == "hello from fastnet\n"
    assert wget(host.world_path, f"http://{HOST_UPLINK_IP}:8081/") == "hello from fastnet\n"
    assert wget(host.world_path, f"http://{HOST_UPLINK_IP}:8080/").startswith("failed")
    # rm -f: no trace
    podman("rm", "-f", "-t", "0", "a", "b")
    wait_until(lambda: not host.projects(), what="project fnet gone")
    podman.close()  # the holder of podman's mounts is a process in HOST: the test's, not fastnet's
    assert_no_leftovers(host)


@pytest.mark.parametrize("podman", [{"capabilities": '{"portMappings": true, "aliases": true}'}], indirect=True)
def test_podman_reload_without_ips_loses_published_ports(host, podman):
    """The difference CONFLIST's "ips" avoids, as podman 4.3 behaves: without it, the re-ADD of
    `network reload` reaches fastnet-cni with capabilities {"ips": true} and no runtimeConfig
    (podman replaced them), so the container comes back at its address (CNI_ARGS IP) with no
    published port; podman's own bridge + portmap conflists keep theirs (portmap is not first)."""
    httpd(podman, "b", "8081:80")
    assert host.ps()["projects"]["fnet"]["containers"]["b"]["publish"] == ["8081/tcp->80"]
    address = host.ps()["projects"]["fnet"]["containers"]["b"]["networks"]["fnet"]["ipv4"]
    podman("network", "reload", "--all")
    b = host.ps()["projects"]["fnet"]["containers"]["b"]
    assert (b["networks"]["fnet"]["ipv4"], b["publish"]) == (address, [])
    assert wget(host.world_path, f"http://{HOST_UPLINK_IP}:8081/").startswith("failed")
    podman("rm", "-f", "-t", "0", "b")
    wait_until(lambda: not host.projects(), what="project fnet gone")
    podman.close()
    assert_no_leftovers(host)


@pytest.mark.parametrize("podman", [{"port_reservation": True}], indirect=True)
def test_podman_port_reservation_is_refused(host, podman):
    """Why containers.conf says enable_port_reservation = false: podman binds each published
    host port itself right after ADD, and fastnet's bind hooks refuse a host process's bind to
    a port fastnet publishes; the container does not start, and nothing is left of it."""
    (podman.rootfs / "www" / "index.html").write_text("hello from fastnet\n")
    cp = podman("run", "-d", "--name", "b", "--network", "fnet", "-p", "8081:80", "--rootfs", str(podman.rootfs),
                "/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www", check=False)
    assert cp.returncode != 0 and "cannot listen on the TCP port: listen tcp4 :8081: bind: address already in use" \
        in cp.stderr, cp.stderr
    podman("rm", "-f", "-t", "0", "b")
    wait_until(lambda: not host.projects(), what="project fnet gone")
    podman.close()
    assert_no_leftovers(host)
