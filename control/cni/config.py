"""The network configuration a runtime pipes to fastnet-cni, and the CNI_* environment, checked
before anything is touched. Every problem becomes a CniError with the spec's code:
6 (not JSON), 1 (version), 2 (a key fastnet does not know), 4 (environment), 7 (a bad value).

The smallest configuration is a bridge network of fastnet's own with fastnet's addresses:

    {"cniVersion": "1.0.0", "name": "fnet", "type": "fastnet-cni", "subnet": "10.61.0.0/24"}

Keys of fastnet's (beside the spec's cniVersion, name, type, ipam, dns, capabilities,
runtimeConfig, prevResult, args):

    subnet, gateway   the network (gateway: the subnet's first address by default)
    project, network  the fastnet project and network the containers join (both default to
                      `name`); naming a project `fastnet up` runs puts them on its network
    driver            "bridge" (this host only, the default) or "overlay" (shared with other
                      hosts through VXLAN and the store; control/netdrivers/overlay.py)
    store             overlay: the etcd v3 client URL every host of the overlay shares (required)
    vxlan_port        overlay: the UDP port of the host's VXLAN device (4789; the same on every host)
    uplink            the interface SNAT leaves by (default: that of the default route); on an
                      overlay, the other hosts reach this one at its IPv4 address
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from ..model import PortMapping
from ..names import ALIAS_MAX, NAME_MAX, name_problem, project_name_problem
from .spec import (DECODE_FAILURE, INVALID_CONFIG, INVALID_ENVIRONMENT, UNSUPPORTED_FIELD, CniError,
                   check_version)

PLUGIN_TYPE = "fastnet-cni"
# The network drivers a CNI network may name (control/netdrivers/): those whose containers are
# veth ports of the host's datapath. macvlan and ipvlan need a parent and modes the CNI
# configuration has no keys for (the distribution's own macvlan/ipvlan plugins serve them).
DRIVERS = ("bridge", "overlay")
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")
CNI_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")  # the spec's network names
CONTAINER_ID_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
VALID_ATTACHMENTS = "cni.dev/valid-attachments"
KNOWN_ARGS = {"IgnoreUnknown", "K8S_POD_NAME", "K8S_POD_NAMESPACE", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID", "IP"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _PortMap(BaseModel):
    model_config = ConfigDict(extra="ignore")
    hostPort: StrictInt = Field(ge=1, le=65535)
    containerPort: StrictInt = Field(ge=1, le=65535)
    protocol: StrictStr = "tcp"
    hostIP: StrictStr = ""


class _RuntimeConfig(BaseModel):
    # A runtime sends only the capabilities the config declares, but may know more than fastnet.
    model_config = ConfigDict(extra="ignore")
    portMappings: list[_PortMap] = []
    aliases: dict[str, list[StrictStr]] = {}
    ips: list[StrictStr] = []


class _Ipam(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: StrictStr


class _Attachment(BaseModel):
    model_config = ConfigDict(extra="ignore")
    containerID: StrictStr
    ifname: StrictStr


class _NetConf(_Model):
    cniVersion: StrictStr
    name: StrictStr
    type: StrictStr
    subnet: StrictStr | None = None
    gateway: StrictStr | None = None
    project: StrictStr | None = None
    network: StrictStr | None = None
    driver: StrictStr = "bridge"
    store: StrictStr | None = None
    vxlan_port: StrictInt | None = Field(None, ge=1, le=65535)
    uplink: StrictStr | None = None
    ipam: _Ipam | None = None
    dns: dict[str, Any] | None = None
    capabilities: dict[str, StrictBool] = {}
    runtimeConfig: _RuntimeConfig = _RuntimeConfig()
    prevResult: dict[str, Any] | None = None
    args: dict[str, Any] | None = None
    valid_attachments: list[_Attachment] | None = Field(None, alias=VALID_ATTACHMENTS)


@dataclass(frozen=True)
class NetConf:
    """A checked network configuration."""

    version: str
    name: str  # the CNI network
    project: str  # the fastnet project its containers join
    network: str  # ... and the network there
    driver: str
    store: str | None  # overlay: the etcd URL the overlay's hosts share
    vxlan_port: int | None  # overlay: the UDP port of the host's VXLAN device (None: fastnet's default)
    subnet: IPv4Network | None  # None: the project's network, or what the ipam plugin hands out
    gateway: IPv4Address | None
    uplink: str | None
    ipam: dict | None  # a delegated plugin's section, as given
    publish: tuple[PortMapping, ...]
    aliases: tuple[str, ...]
    ip: IPv4Address | None  # the `ips` capability's address (runtimeConfig.ips), like CNI_ARGS IP
    prev_result: dict | None
    valid_attachments: tuple[tuple[str, str], ...] | None  # GC: (container id, ifname)
    raw: dict  # the whole configuration, for a delegated ipam plugin


def version_of(data: bytes) -> str | None:
    """The cniVersion of a configuration, if it has a readable one (for errors and VERSION)."""
    try:
        v = json.loads(data).get("cniVersion")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return v if isinstance(v, str) else None


def parse(data: bytes, command: str) -> NetConf:
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(DECODE_FAILURE, f"network configuration is not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise CniError(DECODE_FAILURE, "network configuration is not a JSON object")
    try:
        model = _NetConf.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise CniError(UNSUPPORTED_FIELD, f"network configuration: unknown key {where!r}") from None
        if err["type"] == "missing":
            raise CniError(INVALID_CONFIG, f"network configuration: {where} is missing") from None
        raise CniError(INVALID_CONFIG, f"network configuration: {where}: {err['msg']}") from None
    check_version(model.cniVersion, command)
    if model.type != PLUGIN_TYPE:
        raise CniError(INVALID_CONFIG, f"network configuration: type is {model.type!r}, not {PLUGIN_TYPE!r}")
    if not CNI_NAME_RE.fullmatch(model.name):
        raise CniError(INVALID_CONFIG, f"network configuration: invalid network name {model.name!r}")
    project = model.project or model.name
    if problem := project_name_problem(project):
        hint = "" if model.project else " (set \"project\" to a valid fastnet project name)"
        raise CniError(INVALID_CONFIG, f"network configuration: {problem}{hint}")
    network = model.network or model.name
    if problem := name_problem("network", network, NAME_MAX):
        raise CniError(INVALID_CONFIG, f"network configuration: {problem}")
    if model.driver not in DRIVERS:
        raise CniError(INVALID_CONFIG, f"network configuration: driver {model.driver!r} is not supported "
                       f"(supported: {', '.join(DRIVERS)})")
    store = _check_overlay(model)
    subnet, gateway = _network(model)
    aliases = _aliases(model, network)
    return NetConf(
        version=model.cniVersion, name=model.name, project=project, network=network, driver=model.driver,
        store=store, vxlan_port=model.vxlan_port, subnet=subnet, gateway=gateway, uplink=model.uplink,
        ipam=model.ipam.model_dump() if model.ipam else None,
        publish=_publish(model.runtimeConfig.portMappings) if model.capabilities.get("portMappings", True) else (),
        aliases=aliases,
        ip=_ip(model),
        prev_result=model.prevResult,
        valid_attachments=None if model.valid_attachments is None
        else tuple((a.containerID, a.ifname) for a in model.valid_attachments),
        raw=raw,
    )


def _check_overlay(model: _NetConf) -> str | None:
    """An overlay needs the store its hosts share (its URL, as `store:` of a file takes it), and
    takes its addresses from there. Imported here: VERSION needs neither pyroute2 nor the file's
    config model."""
    from pydantic_core import PydanticCustomError

    from .. import netdrivers
    from ..config import check_store_url

    shared = netdrivers.DRIVERS[model.driver].needs_store
    if shared and model.store is None:
        raise CniError(INVALID_CONFIG, f"network configuration: driver {model.driver} needs \"store\", the etcd URL "
                       "every host of the overlay shares (e.g. \"store\": \"http://10.0.0.5:2379\")")
    if not shared and model.store is not None:
        raise CniError(INVALID_CONFIG, f"network configuration: \"store\" is for overlay networks, "
                       f"not driver {model.driver}")
    if not shared and model.vxlan_port is not None:
        raise CniError(INVALID_CONFIG, f"network configuration: \"vxlan_port\" is for overlay networks, "
                       f"not driver {model.driver}")
    if shared and model.ipam is not None:
        raise CniError(INVALID_CONFIG, f"network configuration: driver {model.driver} claims its addresses in the "
                       "store, across hosts: an ipam plugin would hand out addresses other hosts hold (remove \"ipam\")")
    if model.store is None:
        return None
    try:
        return check_store_url(model.store)
    except PydanticCustomError as exc:
        raise CniError(INVALID_CONFIG, f"network configuration: store: {exc.message()}") from None


def _network(model: _NetConf) -> tuple[IPv4Network | None, IPv4Address | None]:
    subnet = gateway = None
    if model.subnet is not None:
        try:
            subnet = IPv4Network(model.subnet)
        except ValueError as exc:
            raise CniError(INVALID_CONFIG, f"network configuration: subnet: {exc}") from None
        if subnet.prefixlen > 30:
            raise CniError(INVALID_CONFIG, f"network configuration: subnet {subnet} is too small (at most /30)")
    if model.gateway is not None:
        try:
            gateway = IPv4Address(model.gateway)
        except ValueError as exc:
            raise CniError(INVALID_CONFIG, f"network configuration: gateway: {exc}") from None
        if subnet is None:
            raise CniError(INVALID_CONFIG, "network configuration: gateway needs subnet")
        if gateway not in subnet or gateway in (subnet.network_address, subnet.broadcast_address):
            raise CniError(INVALID_CONFIG, f"network configuration: gateway {gateway} is not a host address of {subnet}")
    elif subnet is not None:
        gateway = subnet.network_address + 1
    return subnet, gateway


def _aliases(model: _NetConf, network: str) -> tuple[str, ...]:
    """The runtime's aliases for this network (runtimeConfig.aliases is keyed by the CNI name)."""
    if not model.capabilities.get("aliases", True):
        return ()
    found = model.runtimeConfig.aliases.get(model.name) or model.runtimeConfig.aliases.get(network) or []
    for alias in found:
        if problem := name_problem("alias", alias.lower(), ALIAS_MAX):
            raise CniError(INVALID_CONFIG, f"runtimeConfig.aliases: {problem}")
    return tuple(dict.fromkeys(a.lower() for a in found))


def _ip(model: _NetConf) -> IPv4Address | None:
    """The `ips` capability (https://www.cni.dev/docs/conventions/): the addresses the runtime
    wants, "ADDRESS[/PREFIX]"; a fastnet interface has one IPv4 address. Declaring it matters to
    podman 4.3 beyond static addresses: without it, `network reload` strips the other
    capabilities (README, "Under an existing engine: CNI")."""
    if not model.capabilities.get("ips", True) or not model.runtimeConfig.ips:
        return None
    found = []
    for text in model.runtimeConfig.ips:
        try:
            found.append(IPv4Interface(text).ip)
        except ValueError:
            raise CniError(INVALID_CONFIG, f"runtimeConfig.ips: {text!r} is not an IPv4 address "
                           "(fastnet networks are IPv4)") from None
    if len(found) > 1:
        raise CniError(INVALID_CONFIG, f"runtimeConfig.ips: {len(found)} addresses; a fastnet interface has one")
    return found[0]


def _publish(entries: list[_PortMap]) -> tuple[PortMapping, ...]:
    """runtimeConfig.portMappings as fastnet's published ranges: consecutive single ports (how
    runtimes pass `-p 8080-8082:80-82`) become one range, as `fastnet up` publishes it."""
    mappings: list[PortMapping] = []
    for e in entries:
        proto = e.protocol.lower()
        if proto not in ("tcp", "udp"):
            raise CniError(INVALID_CONFIG, f"runtimeConfig.portMappings: protocol {e.protocol!r} is not tcp or udp")
        host_ip = None
        if e.hostIP not in ("", "0.0.0.0"):
            try:
                host_ip = IPv4Address(e.hostIP)
            except ValueError:
                raise CniError(INVALID_CONFIG, f"runtimeConfig.portMappings: hostIP {e.hostIP!r} is not an IPv4 address") from None
        last = mappings[-1] if mappings else None
        if (last is not None and (last.proto, last.host_ip) == (proto, host_ip)
                and e.hostPort == last.host_port_last + 1 and e.containerPort == last.container_port_last + 1):
            mappings[-1] = PortMapping(host_ip, last.host_port_first, e.hostPort, last.container_port_first,
                                       e.containerPort, proto)
        else:
            mappings.append(PortMapping(host_ip, e.hostPort, e.hostPort, e.containerPort, e.containerPort, proto))
    return tuple(mappings)


@dataclass(frozen=True)
class Call:
    """The CNI_* environment of one invocation."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    path: tuple[str, ...] = ()
    args: tuple[tuple[str, str], ...] = ()

    def arg(self, key: str) -> str | None:
        return next((v for k, v in self.args if k == key), None)


def call_from(env: dict[str, str]) -> Call:
    command = env.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CniError(INVALID_ENVIRONMENT, f"CNI_COMMAND {command!r} is not one of {', '.join(COMMANDS)}"
                       if command else "CNI_COMMAND is not set")
    path = tuple(p for p in env.get("CNI_PATH", "").split(":") if p)
    if command in ("VERSION", "GC", "STATUS"):
        return Call(command, path=path)
    container_id = env.get("CNI_CONTAINERID", "")
    if not container_id:
        raise CniError(INVALID_ENVIRONMENT, "CNI_CONTAINERID is not set")
    if not CONTAINER_ID_RE.fullmatch(container_id):
        raise CniError(INVALID_ENVIRONMENT, f"CNI_CONTAINERID {container_id!r} holds characters the spec forbids")
    ifname = env.get("CNI_IFNAME", "")
    if not ifname:
        raise CniError(INVALID_ENVIRONMENT, "CNI_IFNAME is not set")
    if len(ifname) > 15 or ifname in (".", "..") or any(c in ifname for c in "/: \t\n"):
        raise CniError(INVALID_ENVIRONMENT, f"CNI_IFNAME {ifname!r} is not a valid interface name")
    netns = env.get("CNI_NETNS", "")
    if command in ("ADD", "CHECK") and not netns:
        raise CniError(INVALID_ENVIRONMENT, "CNI_NETNS is not set")
    if command in ("ADD", "CHECK") and not path:
        raise CniError(INVALID_ENVIRONMENT, "CNI_PATH is not set")
    return Call(command, container_id, netns, ifname, path, _args(env.get("CNI_ARGS", "")))


def _args(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in filter(None, text.split(";")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_ARGS: {item!r} is not KEY=VALUE")
        pairs.append((key, value))
    ignore = any(k == "IgnoreUnknown" and v.lower() in ("1", "true") for k, v in pairs)
    unknown = [k for k, _ in pairs if k not in KNOWN_ARGS]
    if unknown and not ignore:
        raise CniError(INVALID_ENVIRONMENT, f"CNI_ARGS: unknown key {unknown[0]!r} (and no IgnoreUnknown=1)")
    for k, v in pairs:
        if k == "IP":
            try:
                IPv4Address(v)
            except ValueError:
                raise CniError(INVALID_ENVIRONMENT, f"CNI_ARGS: IP {v!r} is not an IPv4 address") from None
    return tuple(pairs)
