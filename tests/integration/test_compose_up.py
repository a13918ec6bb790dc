"""Compose files: a Compose file and the equivalent fastnet file give the same containers,
addresses and reachability (real TCP/UDP through published ports from WORLD, container to
container), and a bad Compose file is refused with its own position, creating nothing.

   one host per format, side by side (make_host): project compose_demo
   (directory "Compose_Demo" -> project "compose_demo")

   front 10.90.1.0/24                back 10.90.2.0/24 (internal)     default (compose: 172.18.0.0/16)
     web  .10  8080:80, 9053:5353/udp  db  aliases database             cache  6379:6379
     api                               api
                                                                       (no `networks:` in Compose)
   HOST up0 198.51.100.1/24 ==== veth ==== WORLD up0 198.51.100.2/24 (clients)
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from harness import (
    BLOCKED,
    FASTNET,
    HOST_UPLINK_IP,
    EchoServer,
    run,
    assert_no_leftovers,
    containers,
    tcp_echo,
    udp_echo,
)

COMPOSE = """\
services:
  web:
    image: python:3            # not fastnet's business: one warning lists it
    command: [sleep, infinity]
    ports:
      - "8080:80"
      - target: 5353
        published: 9053
        protocol: udp
    networks:
      front:
        aliases: [www]
        ipv4_address: 10.90.1.10
  api:
    networks: [front, back]
    depends_on: [db]
  db:
    networks:
      back:
        aliases: [database]
  cache:
    ports: ["6379:6379"]
networks:
  front:
    ipam:
      config:
        - subnet: 10.90.1.0/24
  back:
    internal: true
    ipam:
      config:
        - subnet: 10.90.2.0/24
"""

FASTNET_FILE = """\
name: compose_demo
networks:
  compose_demo_front: {subnet: 10.90.1.0/24}
  compose_demo_back: {subnet: 10.90.2.0/24, internal: true}
  compose_demo_default: {subnet: 172.18.0.0/16}
containers:
  compose_demo-web-1:
    command: [sleep, infinity]
    publish: ["8080:80", "9053:5353/udp"]
    networks:
      compose_demo_front: {ipv4_address: 10.90.1.10, aliases: [www, web]}
  compose_demo-api-1:
    networks:
      compose_demo_front: {aliases: [api]}
      compose_demo_back: {aliases: [api]}
  compose_demo-db-1:
    networks:
      compose_demo_back: {aliases: [database, db]}
  compose_demo-cache-1:
    publish: ["6379:6379"]
    networks:
      compose_demo_default: {aliases: [cache]}
"""

PROJECT = "compose_demo"
WEB, API, DB, CACHE = (f"{PROJECT}-{s}-1" for s in ("web", "api", "db", "cache"))
FRONT, BACK, DEFAULT = (f"{PROJECT}_{n}" for n in ("front", "back", "default"))


def compose_dir(host, text: str = COMPOSE) -> Path:
    directory = host.workdir / "Compose_Demo"
    directory.mkdir(exist_ok=True)
    path = directory / "compose.yaml"
    path.write_text(text)
    host.files.append(path)  # teardown runs `fastnet down -f` on it
    return path


def run_in(host, directory: Path, command: str) -> subprocess.CompletedProcess:
    """`fastnet up`/`down` with no -f, run in `directory`: it finds compose.yaml there."""
    cp = subprocess.run(
        ["ip", "netns", "exec", host.name, str(FASTNET), command],
        cwd=directory, capture_output=True, text=True, timeout=120,
    )
    if cp.returncode == 0 and command == "up":
        host.record_objects()
    return cp


def view(host) -> dict:
    """What matters of each container, as `fastnet ps --json` shows it."""
    project = host.ps()["projects"][PROJECT]
    keep = ("ifname", "ipv4", "prefixlen", "mac", "gateway", "aliases")
    return {
        "networks": project["networks"],
        "containers": {
            name: {
                "networks": {net: {k: i[k] for k in keep} for net, i in c["networks"].items()},
                "publish": c["publish"],
                "command": c["command"] and c["command"]["argv"],
            }
            for name, c in project["containers"].items()
        },
    }


def reachability(host) -> dict[str, str]:
    """Every path the topology promises or forbids, with its outcome."""
    c = containers(host, PROJECT)
    # WORLD routes the container subnets to HOST, so "direct" tries really reach the datapath.
    run("ip", "-n", host.world, "route", "replace", "10.90.0.0/16", "via", HOST_UPLINK_IP)
    out = {}
    with EchoServer(c[WEB].netns, "tcp", port=80) as web_tcp, \
         EchoServer(c[WEB].netns, "udp", port=5353), \
         EchoServer(c[CACHE].netns, "tcp", port=6379), \
         EchoServer(c[DB].netns, "tcp", port=5432) as db_tcp:
        world = host.world_path
        out["world->8080/tcp (web:80)"] = tcp_echo(world, HOST_UPLINK_IP, 8080)
        out["world->9053/udp (web:5353)"] = udp_echo(world, HOST_UPLINK_IP, 9053)
        out["world->6379/tcp (cache)"] = tcp_echo(world, HOST_UPLINK_IP, 6379)
        out["world->web direct"] = tcp_echo(world, c[WEB].ip(FRONT), web_tcp.port, timeout=1)
        out["api->web front"] = tcp_echo(c[API].netns, c[WEB].ip(FRONT), web_tcp.port)
        out["api->db back"] = tcp_echo(c[API].netns, c[DB].ip(BACK), db_tcp.port)
        out["web->db across networks"] = tcp_echo(c[WEB].netns, c[DB].ip(BACK), db_tcp.port, timeout=1)
        out["cache->web across networks"] = tcp_echo(c[CACHE].netns, c[WEB].ip(FRONT), web_tcp.port, timeout=1)
        out["cache->web published (hairpin)"] = tcp_echo(c[CACHE].netns, HOST_UPLINK_IP, 8080)
        out["db (internal)->world"] = tcp_echo(c[DB].netns, "198.51.100.2", 9, timeout=1)
    return out


EXPECTED = {
    "world->8080/tcp (web:80)": "ok",
    "world->9053/udp (web:5353)": "ok",
    "world->6379/tcp (cache)": "ok",
    "world->web direct": "blocked",
    "api->web front": "ok",
    "api->db back": "ok",
    "web->db across networks": "blocked",
    "cache->web across networks": "blocked",
    "cache->web published (hairpin)": "ok",
    "db (internal)->world": "blocked",
}


def summarised(outcomes: dict[str, str]) -> dict[str, str]:
    return {k: ("blocked" if v in BLOCKED else v) for k, v in outcomes.items()}


def test_compose_file_matches_the_equivalent_fastnet_file(make_host):
    compose_host, native_host = make_host(), make_host()

    directory = compose_dir(compose_host).parent
    cp = run_in(compose_host, directory, "up")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    warnings = [line for line in cp.stderr.splitlines() if "warning" in line]
    assert warnings == [
        "fastnet: warning: compose.yaml: ignoring Compose keys fastnet does not implement: "
        "services.web.image, services.api.depends_on"
    ], cp.stderr
    native_host.up(FASTNET_FILE)

    compose_view, native_view = view(compose_host), view(native_host)
    assert compose_view == native_view
    web = compose_view["containers"][WEB]["networks"][FRONT]
    assert (web["ipv4"], web["aliases"]) == ("10.90.1.10", ["www", "web"])
    assert compose_view["containers"][DB]["networks"][BACK]["aliases"] == ["database", "db"]
    assert compose_view["networks"][DEFAULT]["subnet"] == "172.18.0.0/16"
    assert sorted(compose_view["containers"][WEB]["publish"]) == sorted(["8080/tcp->80", "9053/udp->5353"])

    compose_paths = summarised(reachability(compose_host))
    assert compose_paths == EXPECTED
    assert summarised(reachability(native_host)) == compose_paths

    # `down` finds compose.yaml the same way and removes the project like any other.
    cp = run_in(compose_host, directory, "down")
    assert cp.returncode == 0 and f"project {PROJECT} is down" in cp.stdout, cp.stdout + cp.stderr
    assert PROJECT not in compose_host.ps()["projects"]
    assert_no_leftovers(compose_host)


def test_bad_compose_file_is_refused_at_its_position_and_creates_nothing(host):
    bad = COMPOSE.replace('      - "8080:80"\n', '      - "8080:80"\n      - "80"\n')
    path = compose_dir(host, bad)
    cp = host.fastnet("up", "-f", str(path), check=False)
    assert cp.returncode == 2, cp.stderr
    errors = [line for line in cp.stderr.splitlines() if "error" in line]
    assert errors == [
        f"fastnet: error: {path}:7:9: services.web.ports[1]: '80' publishes on a random host port, "
        "which fastnet does not do: give the host port, e.g. \"8080:80\""
    ], cp.stderr
    assert host.projects() == []
    assert_no_leftovers(host)
