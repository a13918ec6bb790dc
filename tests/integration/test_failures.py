"""Bad input, mid-way failures and conflicts: `up` refuses or rolls back, and leaves nothing.

   BASE (project demo)
   front 10.90.1.0/24: a .10 [sleep], b, c, e/eth0      back 10.90.2.0/24: d, e/eth1
   bridge 172.17.0.0/16: f

   HOST                                                 WORLD
     up0 198.51.100.1/24 ===========veth============ up0 198.51.100.2/24
     default via 198.51.100.2
     test 16 adds e.g. `10.90.0.0/16 dev up0`, which overlaps front and back

   Failpoints (FASTNET_FAILPOINT) make `up` raise right after a named step:
     attach_interface:<container>/<network>    start_command:<container>
"""
from __future__ import annotations

import re

import pytest
from harness import (
    TWO_NETWORKS,
    TWO_NETWORKS_WITH_COMMAND,
    assert_no_leftovers,
    assert_project_works,
    edit,
    one_line_error,
)

BASE = TWO_NETWORKS_WITH_COMMAND

# Each case marks the offending line with "# <-"; the error must name file, that line and the key.
BAD = {
    "duplicate subnet": (
        """\
networks:
  front:
    subnet: 10.90.1.0/24
  back:
    subnet: 10.90.1.0/24 # <-
containers:
  a:
    networks: [front]
""",
        "networks.back.subnet",
        "already used by network front",
    ),
    "overlapping subnets": (
        """\
networks:
  front:
    subnet: 10.90.1.0/24
  back:
    subnet: 10.90.0.0/16 # <-
containers:
  a:
    networks: [front, back]
""",
        "networks.back.subnet",
        "overlaps 10.90.1.0/24",
    ),
    "/31 subnet": (
        """\
networks:
  tiny:
    subnet: 10.90.1.0/31 # <-
containers:
  a:
    networks: [tiny]
""",
        "networks.tiny.subnet",
        "/31",
    ),
    "address outside its subnet": (
        """\
networks:
  front:
    subnet: 10.90.1.0/24
containers:
  a:
    networks:
      front:
        ipv4_address: 10.90.2.10 # <-
""",
        "containers.a.networks.front.ipv4_address",
        "outside subnet 10.90.1.0/24",
    ),
    "unknown network": (
        """\
networks:
  front:
    subnet: 10.90.1.0/24
containers:
  a:
    networks:
      - front
      - nowhere # <-
""",
        "containers.a.networks",
        "unknown network 'nowhere'",
    ),
    "unknown key": (
        """\
networks:
  front:
    subnet: 10.90.1.0/24
containers:
  a:
    netwrks: [front] # <-
""",
        "containers.a",
        "unknown key 'netwrks'",
    ),
    "invalid container name": (
        """\
networks:
  front:
    subnet: 10.90.1.0/24
containers:
  Web!: # <-
    networks: [front]
""",
        "containers.Web!",
        "invalid container name 'Web!'",
    ),
}


# -- 14 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(BAD))
def test_bad_config_is_refused_before_anything_is_made(host, case):
    body, key, problem = BAD[case]
    text = f"name: bad\n{body}"
    line = next(i for i, l in enumerate(text.splitlines(), 1) if l.endswith("# <-"))
    cp = host.up(text, check=False)
    assert cp.returncode == 2, cp
    err = one_line_error(cp)
    assert re.match(rf"^fastnet: error: {re.escape(str(cp.path))}:{line}:\d+: {re.escape(key)}: ", err), err
    assert problem in err, err
    assert_no_leftovers(host)


# -- 15 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("failpoint", ["attach_interface:b/front", "attach_interface:e/back", "start_command:a"])
def test_failure_half_way_on_a_fresh_host_rolls_back(host, failpoint):
    cp = host.up(BASE, check=False, env={"FASTNET_FAILPOINT": failpoint})
    assert cp.returncode == 1, cp
    err = one_line_error(cp)
    assert err.startswith("fastnet: error: up demo: ") and "rolled back" in err and failpoint in err, err
    assert_no_leftovers(host)
    # and a clean run afterwards works
    host.up(BASE)
    assert_project_works(host)


G_FAILS = "  g:\n    networks: [front]\n"  # a new container g; the failpoint hits its interface
B_ONE, C_ONE = "  b:\n    networks: [front]\n", "  c:\n    networks: [front]\n"
EDITS = {
    "add": lambda t: t + G_FAILS,
    # ... in the same run as a new interface for b
    "add and extend": lambda t: edit(t, B_ONE, "  b:\n    networks: [front, back]\n") + G_FAILS,
    # ... in the same run as a new address for c
    "add and readdress": lambda t: edit(t, C_ONE, "  c:\n    networks:\n      front:\n        ipv4_address: 10.90.1.50\n")
    + G_FAILS,
    # ... in the same run as a new command for a
    "add and recommand": lambda t: edit(t, "[sleep, infinity]", '[sleep, "1000"]') + G_FAILS,
    # ... in the same run as removing c
    "add and remove": lambda t: edit(t, C_ONE, "") + G_FAILS,
}
# Removals run before additions (a replacement reuses names and addresses), so undoing one
# rebuilds what it removed: same configuration, but a new namespace, ifindex or pid.
REBUILT_ON_ROLLBACK = ("add and readdress", "add and recommand", "add and remove")


@pytest.mark.parametrize("change", list(EDITS))
def test_failed_edit_leaves_the_running_project_alone(host, change):
    first = host.up(BASE)
    before = host.snapshot("demo")
    before_config = host.configuration("demo")
    links = {l["ifname"] for l in host.links()}
    edited = EDITS[change](BASE)
    cp = host.up(edited, check=False, env={"FASTNET_FAILPOINT": "attach_interface:g/front"})
    assert cp.returncode == 1, cp
    assert "rolled back" in one_line_error(cp)
    assert host.configuration("demo") == before_config
    if change not in REBUILT_ON_ROLLBACK:
        assert host.snapshot("demo") == before
    assert {l["ifname"] for l in host.links()} == links
    assert_project_works(host)
    assert "up to date" in host.up(first.path).stdout


# -- 16 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["10.90.0.0/16 dev up0", "10.90.2.128/25 via 198.51.100.2"])
def test_subnet_overlapping_a_host_route_is_refused(host, route):
    host.sh("ip", "route", "add", *route.split())
    cp = host.up(TWO_NETWORKS, check=False)
    assert cp.returncode == 1, cp
    err = one_line_error(cp)
    net = "front" if route.startswith("10.90.0.0") else "back"
    assert f"networks.{net}.subnet" in err and route.split()[0] in err, err
    assert_no_leftovers(host)


def test_subnet_overlapping_the_uplink_is_refused(host):
    cp = host.up(TWO_NETWORKS.replace("10.90.2.0/24", "198.51.100.0/24"), check=False)
    assert cp.returncode == 1, cp
    err = one_line_error(cp)
    assert "networks.back.subnet" in err and "198.51.100.0/24" in err, err
    assert_no_leftovers(host)
