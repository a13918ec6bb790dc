"""fastnet-cni's protocol side without a kernel: the configuration model, the CNI_* environment,
results in each version's shape and the error object."""
from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network

import pytest

from fastnet.control.cni import config as cniconfig
from fastnet.control.cni import spec
from fastnet.control.cni.plugin import run
from fastnet.control.model import PortMapping

SMALLEST = b'{"cniVersion": "1.0.0", "name": "fnet", "type": "fastnet-cni", "subnet": "10.61.0.0/24"}'


def test_smallest_config_is_a_bridge_network_named_after_it():
    c = cniconfig.parse(SMALLEST, "ADD")
    assert (c.project, c.network, c.driver) == ("fnet", "fnet", "bridge")
    assert c.subnet == IPv4Network("10.61.0.0/24") and c.gateway == IPv4Address("10.61.0.1")
    assert c.ipam is None and c.publish == () and c.aliases == ()


def test_overlay_names_its_store():
    raw = {**json.loads(SMALLEST), "driver": "overlay", "store": "http://10.0.0.5:2379/", "vxlan_port": 4790}
    c = cniconfig.parse(json.dumps(raw).encode(), "ADD")
    assert (c.driver, c.store, c.vxlan_port) == ("overlay", "http://10.0.0.5:2379", 4790)
    assert cniconfig.parse(SMALLEST, "ADD").vxlan_port is None  # the project's default


def test_ips_capability_names_the_address():
    raw = {**json.loads(SMALLEST), "capabilities": {"ips": True}, "runtimeConfig": {"ips": ["10.61.0.9/24"]}}
    assert cniconfig.parse(json.dumps(raw).encode(), "ADD").ip == IPv4Address("10.61.0.9")
    raw["capabilities"] = {"ips": False}
    assert cniconfig.parse(json.dumps(raw).encode(), "ADD").ip is None


def test_port_mappings_become_ranges():
    raw = json.loads(SMALLEST)
    raw["runtimeConfig"] = {"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"},
        {"hostPort": 9000, "containerPort": 90, "protocol": "udp"},
        {"hostPort": 9001, "containerPort": 91, "protocol": "udp"},
        {"hostPort": 9002, "containerPort": 92, "protocol": "udp", "hostIP": "0.0.0.0"},
    ]}
    c = cniconfig.parse(json.dumps(raw).encode(), "ADD")
    assert c.publish == (
        PortMapping(IPv4Address("127.0.0.1"), 8080, 8080, 80, 80, "tcp"),
        PortMapping(None, 9000, 9002, 90, 92, "udp"),
    )


def test_capability_off_ignores_runtime_config():
    raw = json.loads(SMALLEST)
    raw["capabilities"] = {"portMappings": False, "aliases": False}
    raw["runtimeConfig"] = {"portMappings": [{"hostPort": 1, "containerPort": 1}], "aliases": {"fnet": ["x"]}}
    c = cniconfig.parse(json.dumps(raw).encode(), "ADD")
    assert c.publish == () and c.aliases == ()


@pytest.mark.parametrize("change,code,words", [
    ({"cniVersion": "9.9.9"}, spec.INCOMPATIBLE_VERSION, "not supported"),
    ({"colour": 1}, spec.UNSUPPORTED_FIELD, "colour"),
    ({"type": "bridge"}, spec.INVALID_CONFIG, "type"),
    ({"name": "Not A Name"}, spec.INVALID_CONFIG, "invalid network name"),
    ({"name": "averyveryverylongname"}, spec.INVALID_CONFIG, "set \"project\""),
    ({"gateway": "10.62.0.1"}, spec.INVALID_CONFIG, "not a host address"),
    ({"runtimeConfig": {"ips": ["fd00::2/64"]}}, spec.INVALID_CONFIG, "not an IPv4 address"),
    ({"runtimeConfig": {"ips": ["10.61.0.5/24", "10.61.0.6/24"]}}, spec.INVALID_CONFIG, "2 addresses"),
    ({"driver": "macvlan"}, spec.INVALID_CONFIG, "driver 'macvlan' is not supported"),
    ({"driver": "overlay"}, spec.INVALID_CONFIG, 'driver overlay needs "store"'),
    ({"store": "http://10.0.0.5:2379"}, spec.INVALID_CONFIG, '"store" is for overlay networks, not driver bridge'),
    ({"vxlan_port": 4790}, spec.INVALID_CONFIG, '"vxlan_port" is for overlay networks'),
    ({"driver": "overlay", "store": "etcd://10.0.0.5"}, spec.INVALID_CONFIG, "store: invalid store URL 'etcd://10.0.0.5'"),
    ({"driver": "overlay", "store": "http://10.0.0.5:2379", "vxlan_port": 0}, spec.INVALID_CONFIG, "vxlan_port"),
    ({"driver": "overlay", "store": "http://10.0.0.5:2379", "ipam": {"type": "host-local"}}, spec.INVALID_CONFIG,
     "claims its addresses in the store"),
    ({"runtimeConfig": {"aliases": {"fnet": ["bad name!"]}}}, spec.INVALID_CONFIG, "alias"),
    ({"runtimeConfig": {"portMappings": [{"hostPort": 1, "containerPort": 1, "protocol": "sctp"}]}},
     spec.INVALID_CONFIG, "sctp"),
])
def test_config_errors(change, code, words):
    raw = {**json.loads(SMALLEST), **change}
    with pytest.raises(spec.CniError) as e:
        cniconfig.parse(json.dumps(raw).encode(), "ADD")
    assert e.value.code == code and words in e.value.msg


@pytest.mark.parametrize("env,code", [
    ({}, spec.INVALID_ENVIRONMENT),
    ({"CNI_COMMAND": "ADD"}, spec.INVALID_ENVIRONMENT),
    ({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c/1", "CNI_IFNAME": "eth0", "CNI_NETNS": "/x", "CNI_PATH": "/p"},
     spec.INVALID_ENVIRONMENT),
    ({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "a-very-long-ifname", "CNI_NETNS": "/x",
      "CNI_PATH": "/p"}, spec.INVALID_ENVIRONMENT),
    ({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0", "CNI_NETNS": "/x", "CNI_PATH": "/p",
      "CNI_ARGS": "IP=300.1.1.1"}, spec.INVALID_ENVIRONMENT),
])
def test_environment_errors(env, code):
    with pytest.raises(spec.CniError) as e:
        cniconfig.call_from(env)
    assert e.value.code == code


def test_cni_args():
    call = cniconfig.call_from({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0",
                                "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=web;MAC=02:00:00:00:00:01"})
    assert call.arg("K8S_POD_NAME") == "web" and call.netns == ""  # DEL needs no netns


ATT = spec.Attachment(spec.Interface("h", "02:00:00:00:00:01"), spec.Interface("eth0", "02:00:00:00:00:02", "/run/netns/x"),
                      IPv4Address("10.61.0.2"), 24, IPv4Address("10.61.0.1"), nameservers=("127.0.0.11",))


@pytest.mark.parametrize("version", spec.SUPPORTED_VERSIONS)
def test_result_shape(version):
    r = spec.result(version, ATT)
    assert r["cniVersion"] == version
    ip = r["ips"][0]
    assert ip["interface"] == 1 and r["interfaces"][1]["sandbox"] == "/run/netns/x"
    assert ("version" in ip) == (not spec.at_least(version, "1.0.0"))
    assert r["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.61.0.1"}]


def test_result_appends_to_prev_result():
    prev = {"cniVersion": "0.4.0", "interfaces": [{"name": "x", "mac": "m"}],
            "ips": [{"version": "4", "address": "192.0.2.2/24", "interface": 0}]}
    r = spec.result("1.0.0", ATT, spec.reshape("1.0.0", prev))
    assert [i["name"] for i in r["interfaces"]] == ["x", "h", "eth0"]
    assert r["ips"][1]["interface"] == 2 and all("version" not in ip for ip in r["ips"])


def test_error_object_and_version_command():
    status, out = run({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.3.1"}')
    assert status == 0 and json.loads(out) == {"cniVersion": "0.3.1", "supportedVersions": list(spec.SUPPORTED_VERSIONS)}
    status, out = run({"CNI_COMMAND": "ADD"}, b"{")
    err = json.loads(out)
    assert status == 1 and err["code"] == spec.INVALID_ENVIRONMENT and err["cniVersion"] == spec.LATEST
    status, out = run({"CNI_COMMAND": "STATUS"}, b"{")
    assert status == 1 and json.loads(out)["code"] == spec.DECODE_FAILURE


@pytest.mark.parametrize("command,version,ok", [
    ("CHECK", "0.3.1", False), ("CHECK", "0.4.0", True), ("GC", "1.0.0", False), ("GC", "1.1.0", True),
    ("STATUS", "1.0.0", False), ("ADD", "0.3.0", True),
])
def test_commands_by_version(command, version, ok):
    if ok:
        spec.check_version(version, command)
    else:
        with pytest.raises(spec.CniError) as e:
            spec.check_version(version, command)
        assert e.value.code == spec.INCOMPATIBLE_VERSION


def test_up_keeps_cni_containers_and_their_addresses():
    import dataclasses

    from fastnet.control.config import parse_config
    from fastnet.control.spec import ContainerSpec, InterfaceSpec, SpecError, build

    text = "name: shop\nnetworks:\n  front: {subnet: 10.62.0.0/24}\ncontainers:\n  web: {networks: [front]}\n"
    first = build(parse_config(text), None)
    cni = ContainerSpec("api", ".cni/shop/api", (InterfaceSpec("front", "eth0", "h", "a", IPv4Address("10.62.0.2"), 24,
                                                            IPv4Address("10.62.0.1"), True),), origin="cni")
    previous = dataclasses.replace(first, containers={"api": cni})  # web not made yet, api holds .2
    again = build(parse_config(text), previous)
    assert again.containers["api"] == cni
    assert again.containers["web"].interfaces[0].ipv4 == IPv4Address("10.62.0.3")
    with pytest.raises(SpecError, match="front: container api, attached through cni, is on it"):
        build(parse_config(text.replace("10.62.0.0/24", "10.64.0.0/24")), previous)
    with pytest.raises(SpecError, match="containers.api: the name is taken"):
        build(parse_config(text.replace("web:", "api:")), previous)
