"""What the datapath's tables can hold, counted before `up` makes anything (the eBPF backend's
table_problems; the integration tests drive the same check through `up` for containers)."""
import dataclasses
from ipaddress import IPv4Address

from fastnet.control.backends.ebpf import EbpfBackend
from fastnet.control.backends.iptables import IptablesBackend
from fastnet.control.config import PortMapping, parse_config
from fastnet.control.spec import build
from fastnet.datapath import abi
from fastnet.datapath.maps import port_prefixes


def project(name: str, subnet: str, publish: list[str], containers: int = 1) -> object:
    entries = "".join(f"      - \"{p}\"\n" for p in publish)
    body = f"    networks: [n]\n    publish:\n{entries}" if publish else "    networks: [n]\n"
    text = f"name: {name}\nnetworks:\n  n: {{subnet: {subnet}}}\ncontainers:\n" + "".join(
        f"  c{i}:\n{body}" for i in range(containers))
    return build(parse_config(text), None)


def test_everything_fits():
    assert EbpfBackend.table_problems([project("a", "10.90.1.0/24", ["8080:80", "7000-7099:7000-7099/udp"])]) is None


def test_published_ranges_are_counted_in_table_entries_not_ports():
    per_range = len(port_prefixes(1, 65535))  # prefixes of the trie, not 65535 entries
    assert per_range <= 32
    limit = abi.constants()["FN_MAX_SERVICES"]
    fits = limit // per_range
    base = project("a", "10.90.1.0/24", [])

    def publishing(count: int):
        web = base.containers["c0"]
        mappings = tuple(PortMapping(IPv4Address(0x0A000000 + i), 1, 65535, 1, 65535, "tcp") for i in range(count))
        return dataclasses.replace(base, containers={"c0": dataclasses.replace(web, publish=mappings)})

    assert EbpfBackend.table_problems([publishing(fits)]) is None
    assert EbpfBackend.table_problems([publishing(fits + 1)]) == (
        f"{(fits + 1) * per_range} table entries for ports published on one address, above the datapath's {limit} "
        "(FN_MAX_SERVICES in bpf/include/fastnet/abi.h)")


def test_ports_per_network_and_per_host():
    limit = abi.constants()["FN_MAX_FLOOD_PORTS"]
    crowded = project("a", "10.90.0.0/20", [], containers=limit + 1)
    assert EbpfBackend.table_problems([crowded]) == (
        f"networks.n: {limit + 1} container interfaces, above the datapath's {limit} per network "
        "(FN_MAX_FLOOD_PORTS in bpf/include/fastnet/abi.h)")
    per_host = abi.constants()["FN_MAX_ENDPOINTS"]
    projects = [project(f"p{i}", f"10.{100 + i}.0.0/20", [], containers=limit) for i in range(per_host // limit + 1)]
    assert "container interfaces on bridge networks on this host, above the datapath's 4096" in \
        EbpfBackend.table_problems(projects)


def test_the_reference_backend_has_no_tables_of_its_own():
    assert IptablesBackend.table_problems([project("a", "10.90.0.0/16", [], containers=300)]) is None
