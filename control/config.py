"""Load and validate a fastnet project file.

Everything a user can get wrong is caught here, before fastnet touches the
kernel: a half-applied network setup is much harder to diagnose than a
one-line error that points at the offending spot of the YAML file.

Loading runs in three stages:

1. ruamel.yaml parses the text in round-trip mode (YAML 1.2), so that every
   mapping and sequence remembers where its keys and items are.
   ``_read_yaml`` turns that tree into plain Python data and records the
   positions per key path in a ``SourceMap``.
2. Private pydantic models (``_FileSpec`` and the ones it nests) check the
   shape and every value on its own: unknown keys, wrong types, names,
   subnets, addresses, port mappings.
3. ``_resolve`` checks how values relate to each other (overlapping subnets,
   unknown networks, address clashes) and builds the public, immutable model.

Each stage reports the problem that comes first in the file, as a
``ConfigError`` whose text is one line: ``FILE:LINE:COL: key.path: problem``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import shlex
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, NoReturn

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from . import compose, netdrivers
from .netdrivers import Role
from .names import (
    ALIAS_MAX,
    NAME_MAX,
    NAME_RE,
    PROJECT_NAME_MAX,
    PROJECT_NAME_WHY,
    name_problem,
)
from .model import (
    CONTAINER_MODE_PREFIX,
    DEFAULT_NETWORK,
    Conntrack,
    PortMapping,
    describe_mapping,
    mappings_overlap,
)
from .source import ConfigError, KeyPath, SourceMap, describe, read_yaml

__all__ = [
    "DEFAULT_GATEWAY",
    "DEFAULT_NETWORK",
    "DEFAULT_SUBNET",
    "Attachment",
    "Config",
    "ConfigError",
    "Container",
    "Network",
    "PortMapping",
    "load_config",
    "parse_config",
]

DEFAULT_SUBNET = IPv4Network("172.17.0.0/16")
DEFAULT_GATEWAY = IPv4Address("172.17.0.1")

BACKENDS = ("ebpf", "iptables")
NETWORK_MODES = ("host", "none")  # and container:NAME

_PUBLISH_RE = re.compile(
    r"^(?:(?P<ip>[0-9.]+):)?(?P<host>\d+(?:-\d+)?):(?P<cont>\d+(?:-\d+)?)(?:/(?P<proto>tcp|udp))?$",
    re.ASCII,
)


# --------------------------------------------------------------------------
# Public model
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    """A network with a fixed subnet. For ``bridge`` the host owns ``gateway``; for
    ``macvlan``/``ipvlan`` the containers sit on the segment of host interface ``parent`` and
    ``gateway`` is that segment's router (see control/netdrivers/)."""

    name: str
    driver: str
    subnet: IPv4Network
    gateway: IPv4Address
    internal: bool
    parent: str | None = None  # macvlan/ipvlan: host interface, or IF.VLAN (802.1Q sub-interface)
    mode: str | None = None  # macvlan: bridge|private|vepa|passthru; ipvlan: l2|l3; None for bridge
    mtu: int | None = None  # bridge: its container interfaces' MTU; None: the uplink's
    sized: bool = False  # fastnet sets its interfaces' MTU (its driver's sets_mtu)
    mtu_overhead: int = 0  # what its driver's encapsulation takes from the uplink's MTU (overlay: 50)


@dataclass(frozen=True)
class Attachment:
    """One container interface; its position in ``Container.attachments`` gives ethN."""

    network: str
    ipv4_address: IPv4Address | None  # None: allocated by fastnet.control.ipam
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Container:
    name: str
    attachments: tuple[Attachment, ...]
    command: tuple[str, ...] | None
    publish: tuple[PortMapping, ...]
    # None: attached to its `attachments` (the default). Else exactly "host" (the host's
    # namespace), "none" (its own namespace with only lo) or "container:NAME" (NAME's
    # namespace); such a container has no attachments.
    network_mode: str | None = None


@dataclass(frozen=True)
class Config:
    """A fully validated project. Treat the dicts as read-only.

    ``networks`` holds the defined networks in file order, followed by the
    default ``bridge`` network when a container uses it without defining it.
    """

    name: str
    uplink: str | None
    backend: str
    networks: dict[str, Network]
    containers: dict[str, Container]
    source: str
    conntrack: Conntrack = Conntrack()
    warnings: tuple[str, ...] = ()  # one line each, for stderr (e.g. Compose keys ignored)
    # ebpf backend: publishing ports of the host's ip_local_port_range is refused at `up`
    # unless this is true (engine.preflight says why)
    publish_ephemeral_ports: bool = False
    # overlay networks: the etcd v3 URL every host of the overlay shares, and the VXLAN UDP port
    store: str | None = None
    vxlan_port: int = 4789


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the project file at ``path``; raise ConfigError on any problem."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, None, None, "", f"cannot read the file: {exc}") from None
    return parse_config(text, source)


def parse_config(text: str, source: str = "<string>") -> Config:
    """Validate project-file text; ``source`` names it in error messages. A Compose file is
    translated into this format first, keeping its positions (see compose.py)."""
    data, where = read_yaml(text, source)
    warnings: tuple[str, ...] = ()
    if compose.is_compose(source, data):
        data, where, warnings = compose.translate(data, where, os.path.dirname(os.path.abspath(source)))
    spec = _check_schema(data, where)
    config = _resolve(spec, where)
    return dataclasses.replace(config, warnings=warnings) if warnings else config


# --------------------------------------------------------------------------
# Stage 2: shape and single values (pydantic)
# --------------------------------------------------------------------------


def _fail(problem: str) -> NoReturn:
    """Raise a pydantic error whose message is exactly ``problem``."""
    raise PydanticCustomError("fastnet", "{problem}", {"problem": problem})


def _expect(what: str, value: Any) -> NoReturn:
    _fail(f"expected {what}, got {describe(value)}")


def _name(kind: str, max_len: int, why: str = "") -> AfterValidator:
    def check(value: str) -> str:
        problem = name_problem(kind, value, max_len, why)
        if problem:
            _fail(problem)
        return value

    return AfterValidator(check)


def _check_ifname(value: str) -> str:
    # The rules of the kernel's dev_valid_name().
    if not 1 <= len(value) <= 15 or value in (".", "..") or re.search(r"[/:\s]", value):
        _fail(f"invalid interface name {value!r}: needs 1 to 15 characters and no '/', ':' or whitespace")
    return value


def _check_backend(value: str) -> str:
    if value not in BACKENDS:
        _fail(f"unknown backend {value!r}: choose one of {', '.join(BACKENDS)}")
    return value


def _check_network_mode(value: str) -> str:
    """Only the form is checked here; what `container:NAME` names is checked in stage 3."""
    if value in NETWORK_MODES:
        return value
    if value.startswith(CONTAINER_MODE_PREFIX):
        target = value[len(CONTAINER_MODE_PREFIX):]
        if not target:
            _fail("'container:' needs the name of a container of this file, e.g. 'container:db'")
        if not NAME_RE.fullmatch(target):
            _fail(f"{value!r} does not name a container: {target!r} is not a valid container name")
        return value
    hint = " (leave network_mode out to attach the container to its 'networks')" if value in ("bridge", "default") else ""
    _fail(f"unknown network mode {value!r}: use host, none or container:NAME{hint}")


def _check_driver(value: str) -> str:
    if value not in netdrivers.DRIVERS:
        _fail(f"unknown driver {value!r}: choose one of {', '.join(netdrivers.DRIVERS)}")
    return value


def _check_parent(value: str) -> str:
    """A host interface, or IF.VLAN for the 802.1Q sub-interface fastnet creates (VLAN 1-4094)."""
    base, dot, vlan = value.rpartition(".")
    if dot and vlan.isdigit():  # a name like br.lan is a plain interface name
        if not 1 <= int(vlan) <= 4094:
            _fail(f"invalid parent {value!r}: the part after '.' must be a VLAN id from 1 to 4094")
        _check_ifname(base)
    _check_ifname(value)
    return value


def _parse_subnet(value: Any) -> IPv4Network:
    if not isinstance(value, str):
        _expect("a subnet like 10.90.1.0/24", value)
    if ":" in value:
        _fail(f"{value!r} is not supported: fastnet networks are IPv4 only")
    if "/" not in value:
        _fail(f"{value!r} has no prefix length; write the subnet in CIDR form, e.g. 10.90.1.0/24")
    try:
        subnet = IPv4Network(value)
    except ValueError:
        try:
            network = IPv4Network(value, strict=False)
        except ValueError:
            _fail(f"{value!r} is not an IPv4 subnet in CIDR form like 10.90.1.0/24")
        _fail(f"{value} has host bits set; the network address would be {network}")
    if subnet.prefixlen > 30:
        _fail(
            f"subnet too small: needs at most /30 (network, gateway, broadcast and one container), "
            f"got /{subnet.prefixlen}"
        )
    return subnet


def _parse_address(value: Any) -> IPv4Address:
    if not isinstance(value, str):
        _expect("an IPv4 address like 10.90.1.10", value)
    try:
        return IPv4Address(value)
    except ValueError:
        _fail(f"{value!r} is not an IPv4 address" + (" (IPv6 is not supported)" if ":" in value else ""))


def _parse_ports(entry: str, text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    low, high = int(first), int(last or first)
    for port in (low, high):
        if not 1 <= port <= 65535:
            _fail(f"invalid port mapping {entry!r}: port {port} is outside 1-65535")
    if low > high:
        _fail(f"invalid port mapping {entry!r}: range {text} ends before it starts")
    return low, high


def _parse_port_mapping(value: Any) -> PortMapping:
    if not isinstance(value, str):
        _fail(f'publish entries must be strings like "8080:80", got {describe(value)}')
    match = _PUBLISH_RE.fullmatch(value)
    if match is None:
        _fail(
            f"invalid port mapping {value!r}: expected [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp], "
            f"e.g. \"8080:80\" or \"127.0.0.1:5000-5001:5000-5001/udp\""
        )
    host_ip = None
    if match["ip"] is not None:
        try:
            host_ip = IPv4Address(match["ip"])
        except ValueError:
            _fail(f"invalid port mapping {value!r}: {match['ip']!r} is not an IPv4 address")
    host = _parse_ports(value, match["host"])
    cont = _parse_ports(value, match["cont"])
    if host[1] - host[0] != cont[1] - cont[0]:
        _fail(
            f"invalid port mapping {value!r}: the host range has {host[1] - host[0] + 1} ports "
            f"but the container range has {cont[1] - cont[0] + 1}"
        )
    return PortMapping(host_ip, host[0], host[1], cont[0], cont[1], match["proto"] or "tcp")


def _split_command(value: str) -> list[str]:
    try:
        return shlex.split(value)
    except ValueError as exc:  # e.g. "No closing quotation"
        _fail(f"cannot split the command into words ({exc})")


def _check_command(value: list[str]) -> list[str]:
    if not value:
        _fail("command is empty; leave the key out to use the default command")
    return value


def check_store_url(value: str) -> str:
    """The etcd v3 client URL of `store:` (also fastnet-cni's "store"), without a trailing slash."""
    from urllib.parse import urlsplit

    try:
        url = urlsplit(value)
        port = url.port
    except ValueError as exc:
        _fail(f"invalid store URL {value!r}: {exc}")
    if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/") or url.query:
        _fail(f"invalid store URL {value!r}: expected the etcd v3 client URL, e.g. http://10.0.0.5:2379")
    del port
    return value.rstrip("/")


def _yaml_form(value: Any) -> str | None:
    """Discriminate unions by YAML node kind, so errors name the form given."""
    if isinstance(value, list):
        return "<list>"
    if isinstance(value, dict):
        return "<mapping>"
    if isinstance(value, str):
        return "<string>"
    return None


# pydantic adds a union's tag to error locations; _schema_error skips these.
_UNION_TAGS = ("<list>", "<mapping>", "<string>")

_ProjectName = Annotated[
    StrictStr, _name("project", PROJECT_NAME_MAX, PROJECT_NAME_WHY)
]
_NetworkName = Annotated[StrictStr, _name("network", NAME_MAX)]
_ContainerName = Annotated[StrictStr, _name("container", NAME_MAX)]
_Alias = Annotated[StrictStr, _name("alias", ALIAS_MAX)]
_Address = Annotated[IPv4Address, PlainValidator(_parse_address)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _NetworkSpec(_Spec):
    driver: Annotated[StrictStr, AfterValidator(_check_driver)] = netdrivers.DEFAULT
    subnet: Annotated[IPv4Network, PlainValidator(_parse_subnet)] | None = None  # required except for bridge
    gateway: _Address | None = None
    internal: StrictBool = False
    parent: Annotated[StrictStr, AfterValidator(_check_parent)] | None = None  # macvlan/ipvlan only
    mode: StrictStr | None = None  # macvlan/ipvlan only; checked against the driver in stage 3
    mtu: StrictInt | None = None  # bridge only; checked in stage 3


class _AttachmentSpec(_Spec):
    ipv4_address: _Address | None = None
    aliases: list[_Alias] = []


_NetworkRefs = Annotated[
    Annotated[list[StrictStr], Tag("<list>")]
    | Annotated[dict[str, _AttachmentSpec | None], Tag("<mapping>")],
    Discriminator(
        _yaml_form,
        custom_error_type="fastnet_expected",
        custom_error_message="a list of network names or a mapping of network name to settings",
    ),
]

_Command = Annotated[
    Annotated[list[StrictStr], Tag("<list>")]
    | Annotated[StrictStr, AfterValidator(_split_command), Tag("<string>")],
    Discriminator(
        _yaml_form,
        custom_error_type="fastnet_expected",
        custom_error_message="a list of strings or one command string",
    ),
    AfterValidator(_check_command),
]


class _ContainerSpec(_Spec):
    networks: _NetworkRefs | None = None
    command: _Command | None = None
    publish: list[Annotated[PortMapping, PlainValidator(_parse_port_mapping)]] | None = None
    network_mode: Annotated[StrictStr, AfterValidator(_check_network_mode)] | None = None


_Seconds = Annotated[StrictInt, Field(ge=1, le=7 * 86400)]


class _TimeoutsSpec(_Spec):
    tcp_syn: _Seconds = Conntrack.tcp_syn
    tcp_established: _Seconds = Conntrack.tcp_established
    tcp_half_closed: _Seconds = Conntrack.tcp_half_closed
    tcp_closing: _Seconds = Conntrack.tcp_closing
    udp: _Seconds = Conntrack.udp
    icmp: _Seconds = Conntrack.icmp


class _ConntrackSpec(_Spec):
    max_flows: Annotated[StrictInt, Field(ge=1024, le=1 << 24)] = Conntrack.max_flows
    max_new_flows: Annotated[StrictInt, Field(ge=256, le=1 << 22)] = Conntrack.max_new_flows
    inbound_percent: Annotated[StrictInt, Field(ge=1, le=99)] = Conntrack.inbound_percent
    owner_percent: Annotated[StrictInt, Field(ge=1, le=100)] = Conntrack.owner_percent
    timeouts: _TimeoutsSpec = _TimeoutsSpec()


class _FileSpec(_Spec):
    name: _ProjectName = "fastnet"
    uplink: Annotated[StrictStr, AfterValidator(_check_ifname)] | None = None
    backend: Annotated[StrictStr, AfterValidator(_check_backend)] = "ebpf"
    networks: dict[_NetworkName, _NetworkSpec | None] | None = None
    containers: dict[_ContainerName, _ContainerSpec | None] | None = None
    conntrack: _ConntrackSpec = _ConntrackSpec()
    publish_ephemeral_ports: StrictBool = False
    store: Annotated[StrictStr, AfterValidator(check_store_url)] | None = None
    vxlan_port: Annotated[StrictInt, Field(ge=1, le=65535)] = 4789


# How pydantic's own error types read in our messages: "expected X, got Y".
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}


def _check_schema(data: dict[str, Any], where: SourceMap) -> _FileSpec:
    try:
        return _FileSpec.model_validate(data)
    except ValidationError as exc:
        errors = [_schema_error(error, data, where) for error in exc.errors(include_url=False)]
        raise min(errors, key=lambda e: (e.line, e.col)) from None


def _schema_error(error: Any, data: dict[str, Any], where: SourceMap) -> ConfigError:
    """Translate one pydantic error, mapping its ``loc`` back to the file."""
    path = _data_path(data, error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return where.error(path[:-1], f"unknown key {path[-1]!r}{_key_hint(path)}", at=path, key=True)
    if kind == "fastnet_expected":
        problem = f"expected {error['msg']}, got {describe(error['input'])}"
    elif kind in _EXPECTED:
        problem = f"expected {_EXPECTED[kind]}, got {describe(error['input'])}"
        if kind == "string_type" and isinstance(error["input"], (int, float)):
            problem += " (put it in quotes)"
    else:  # our own messages ("fastnet") and anything rarer, in pydantic's words
        problem = error["msg"]
    return where.error(path, problem, key=error["loc"][-1] == "[key]")


def _data_path(data: Any, loc: tuple[str | int, ...]) -> KeyPath:
    """The longest prefix of ``loc`` that exists in the data, without pydantic's markers."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if part == "[key]" or part in _UNION_TAGS:
            continue
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            break
        path.append(part)
    return tuple(path)


def _key_hint(path: KeyPath) -> str:
    """Suggest the key that was probably meant, or list the valid ones."""
    match path[:-1]:
        case ():
            model: type[_Spec] = _FileSpec
        case ("networks", _):
            model = _NetworkSpec
        case ("containers", _):
            model = _ContainerSpec
        case ("containers", _, "networks", _):
            model = _AttachmentSpec
        case _:
            return ""
    keys = list(model.model_fields)
    close = difflib.get_close_matches(str(path[-1]), keys, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {', '.join(keys)})"


# --------------------------------------------------------------------------
# Stage 3: cross-references, defaults, public model
# --------------------------------------------------------------------------


def _resolve(spec: _FileSpec, where: SourceMap) -> Config:
    problems: list[ConfigError] = []
    defined = spec.networks or {}

    networks: dict[str, Network] = {}
    for name, net in defined.items():
        network = _resolve_network(name, net or _NetworkSpec(), where, problems)
        if network is not None:
            networks[name] = network

    containers = {
        name: _resolve_container(name, cont or _ContainerSpec(), list(defined), where, problems)
        for name, cont in (spec.containers or {}).items()
    }
    bridge_users = [
        c.name for c in containers.values() if any(a.network == DEFAULT_NETWORK for a in c.attachments)
    ]
    if bridge_users and DEFAULT_NETWORK not in defined:
        networks[DEFAULT_NETWORK] = Network(DEFAULT_NETWORK, netdrivers.DEFAULT, DEFAULT_SUBNET, DEFAULT_GATEWAY, False,
                                            sized=netdrivers.DRIVERS[netdrivers.DEFAULT].sets_mtu)

    _check_network_modes(spec.containers or {}, containers, where, problems)
    _check_overlaps(networks, defined, bridge_users, where, problems)
    _check_addresses(containers, networks, where, problems)
    _check_publish(containers, networks, where, problems)
    _check_store_needed(spec, networks, where, problems)
    if problems:
        raise min(problems, key=lambda e: (e.line, e.col))
    ct = spec.conntrack
    conntrack = Conntrack(ct.max_flows, ct.max_new_flows, ct.inbound_percent, ct.owner_percent,
                          **ct.timeouts.model_dump())
    return Config(spec.name, spec.uplink, spec.backend, networks, containers, where.source, conntrack,
                  publish_ephemeral_ports=spec.publish_ephemeral_ports, store=spec.store, vxlan_port=spec.vxlan_port)


def _check_store_needed(spec: _FileSpec, networks: dict[str, Network], where: SourceMap,
                        problems: list[ConfigError]) -> None:
    """A network shared with other hosts (overlay) needs the store they share."""
    if spec.store is not None:
        return
    for net in networks.values():
        if netdrivers.DRIVERS[net.driver].needs_store:
            problems.append(where.error(("networks", net.name, "driver"), f"driver {net.driver} needs 'store:', "
                                        "the etcd URL every host of the overlay shares (e.g. store: http://10.0.0.5:2379)"))
            return


def _check_publish(
    containers: dict[str, Container], networks: dict[str, Network], where: SourceMap, problems: list[ConfigError]
) -> None:
    """A host (address, protocol, port) leads to one container; publishing needs a network
    that reaches the outside."""
    seen: list[tuple[str, PortMapping]] = []
    for container in containers.values():
        path = ("containers", container.name, "publish")
        if container.publish and container.network_mode is None and all(networks[a.network].internal for a in container.attachments if a.network in networks):
            problems.append(where.error(path, "cannot publish ports: the container is only on internal networks", key=True))
        # As in Docker, nothing is published on macvlan/ipvlan: such a container is reachable at
        # its own address on the parent's segment, and the published path needs the host's NAT.
        default = next((networks[a.network] for a in container.attachments
                        if a.network in networks and not networks[a.network].internal), None)
        if container.publish and default is not None and netdrivers.DRIVERS[default.driver].role is not Role.BRIDGED:
            problems.append(where.error(path, f"cannot publish ports: the container's default route is on "
                                        f"{default.driver} network {default.name} (reach it at its own address)", key=True))
        for i, mapping in enumerate(container.publish):
            other = next(((owner, m) for owner, m in seen if mappings_overlap(m, mapping)), None)
            if other is not None:
                owner, m = other
                problem = (
                    f"{describe_mapping(mapping)} overlaps {describe_mapping(m)} already published by "
                    f"container {owner}"
                )
                problems.append(where.error(path, problem, at=(*path, i)))
            seen.append((container.name, mapping))


def _not_a_host(address: IPv4Address, subnet: IPv4Network) -> str | None:
    """Why ``address`` cannot be given to an interface in ``subnet``, if it cannot."""
    if address not in subnet:
        return f"is outside subnet {subnet}"
    if address == subnet.network_address:
        return f"is the network address of {subnet}"
    if address == subnet.broadcast_address:
        return f"is the broadcast address of {subnet}"
    return None


def _resolve_network(
    name: str, spec: _NetworkSpec, where: SourceMap, problems: list[ConfigError]
) -> Network | None:
    subnet = spec.subnet
    if subnet is None:
        if name != DEFAULT_NETWORK or spec.driver != netdrivers.DEFAULT:
            problem = "subnet is required, e.g. 'subnet: 10.90.1.0/24'"
            problems.append(where.error(("networks", name), problem, key=True))
            return None
        subnet = DEFAULT_SUBNET
    gateway = subnet.network_address + 1 if spec.gateway is None else spec.gateway
    reason = _not_a_host(gateway, subnet)
    if reason:
        problems.append(where.error(("networks", name, "gateway"), f"gateway {gateway} {reason}"))
    parent, mode = _resolve_driver(name, spec, where, problems)
    _check_mtu(name, spec, where, problems)
    return Network(name, spec.driver, subnet, gateway, spec.internal, parent, mode, spec.mtu,
                   netdrivers.DRIVERS[spec.driver].sets_mtu, netdrivers.DRIVERS[spec.driver].mtu_overhead)


MTU_MIN, MTU_MAX = 68, 65535  # IPv4's minimum (RFC 791); a veth's maximum


def _check_mtu(name: str, spec: _NetworkSpec, where: SourceMap, problems: list[ConfigError]) -> None:
    path = ("networks", name, "mtu")
    if spec.mtu is None:
        return
    if not netdrivers.DRIVERS[spec.driver].sets_mtu:
        problems.append(where.error(path, f"mtu is only for bridge networks: a {spec.driver} network's "
                                    "interfaces have their parent's", key=True))
    elif not MTU_MIN <= spec.mtu <= MTU_MAX:
        problems.append(where.error(path, f"mtu {spec.mtu} is out of range: from {MTU_MIN} to {MTU_MAX}"))


def _resolve_driver(
    name: str, spec: _NetworkSpec, where: SourceMap, problems: list[ConfigError]
) -> tuple[str | None, str | None]:
    """parent and mode as the driver wants them (defaults filled in)."""
    path = ("networks", name)
    driver = netdrivers.DRIVERS[spec.driver]
    modes = driver.modes
    if not driver.needs_parent:
        with_parent = " and ".join(n for n, d in netdrivers.DRIVERS.items() if d.needs_parent)
        for key in ("parent", "mode", ):
            if getattr(spec, key) is not None:
                problems.append(where.error(
                    (*path, key), f"{key} is only for {with_parent} networks (driver is {spec.driver})", key=True))
        return None, None
    if spec.parent is None:
        problems.append(where.error(path, f"parent is required for a {spec.driver} network, e.g. 'parent: eth0'", key=True))
    if spec.internal and driver.role is not Role.BRIDGED:
        bridged = " and ".join(n for n, d in netdrivers.DRIVERS.items() if d.role is Role.BRIDGED)
        problems.append(where.error((*path, "internal"), f"internal is only for {bridged} networks: a {spec.driver} "
                                    "network is on its parent's segment", key=True))
    mode = modes[0] if spec.mode is None else spec.mode
    if mode not in modes:
        problems.append(where.error((*path, "mode"), f"unknown {spec.driver} mode {mode!r}: choose one of {', '.join(modes)}"))
    return spec.parent, mode


def _check_overlaps(
    networks: dict[str, Network],
    defined: dict[str, Any],
    bridge_users: list[str],
    where: SourceMap,
    problems: list[ConfigError],
) -> None:
    """Report each network whose subnet collides with one earlier in the file.

    The implicit default network has no place in the file, so a collision
    with it is reported at the user's network instead.
    """
    seen: list[Network] = []
    for net in networks.values():
        other = next((s for s in seen if s.subnet.overlaps(net.subnet)), None)
        seen.append(net)
        if other is None:
            continue
        if net.name not in defined:  # the implicit default network
            problem = (
                f"{other.subnet} overlaps {net.subnet} of the default network '{net.name}' "
                f"(used by container {bridge_users[0]}); "
                f"choose another subnet or set networks.{net.name}.subnet"
            )
            problems.append(where.error(("networks", other.name, "subnet"), problem))
        elif net.subnet == other.subnet:
            problem = f"{net.subnet} is already used by network {other.name}"
            problems.append(where.error(("networks", net.name, "subnet"), problem))
        else:
            problem = f"{net.subnet} overlaps {other.subnet} of network {other.name}"
            problems.append(where.error(("networks", net.name, "subnet"), problem))


def _resolve_container(
    name: str, spec: _ContainerSpec, defined: list[str], where: SourceMap, problems: list[ConfigError]
) -> Container:
    path = ("containers", name, "networks")
    refs: list[tuple[str, _AttachmentSpec | None, KeyPath, bool]]  # network, settings, position, at key
    if isinstance(spec.networks, dict):
        refs = [(net, attach, (*path, net), True) for net, attach in spec.networks.items()]
    else:
        refs = [(net, None, (*path, i), False) for i, net in enumerate(spec.networks or [])]

    attachments: list[Attachment] = []
    for net, attach, at, on_key in refs:
        if net not in defined and net != DEFAULT_NETWORK:
            known = ", ".join(dict.fromkeys([*defined, DEFAULT_NETWORK]))
            problems.append(where.error(path, f"unknown network {net!r} (known: {known})", at=at, key=on_key))
        elif any(a.network == net for a in attachments):
            problems.append(where.error(path, f"network {net!r} is listed twice", at=at, key=on_key))
        else:
            attach = attach or _AttachmentSpec()
            attachments.append(Attachment(net, attach.ipv4_address, tuple(attach.aliases)))
    if not refs and spec.network_mode is None:
        attachments.append(Attachment(DEFAULT_NETWORK, None, ()))
    return Container(
        name,
        tuple(attachments),
        tuple(spec.command) if spec.command is not None else None,
        tuple(spec.publish or ()),
        spec.network_mode,
    )


def _check_network_modes(
    specs: dict[str, _ContainerSpec | None],
    containers: dict[str, Container],
    where: SourceMap,
    problems: list[ConfigError],
) -> None:
    """A moded container has no interfaces of its own to attach or publish on, and
    `container:NAME` names another container of this file that owns a namespace (no chains:
    fastnet creates NAME first and removes it last, which one level of sharing keeps simple)."""
    for name, spec in specs.items():
        mode = spec.network_mode if spec else None
        if mode is None:
            continue
        path = ("containers", name, "network_mode")
        publish_why = {
            "host": "its servers listen on the host's own addresses and ports",
            "none": "it has no network to publish from",
        }.get(mode, f"publish the ports on {mode[len(CONTAINER_MODE_PREFIX):]}, whose namespace it shares")
        for key, why in (("networks", "the container has no interfaces of its own"), ("publish", publish_why)):
            if getattr(spec, key) is not None:
                problems.append(where.error(path, f"network_mode {mode} cannot be combined with {key!r} ({why})"))
        if not mode.startswith(CONTAINER_MODE_PREFIX):
            continue
        target = mode[len(CONTAINER_MODE_PREFIX):]
        other = containers.get(target)
        if target == name:
            problems.append(where.error(path, f"{mode} names the container itself"))
        elif other is None:
            known = ", ".join(n for n in containers if n != name) or "none"
            problems.append(where.error(path, f"{mode}: no container {target!r} in this file (known: {known})"))
        elif other.network_mode is not None and other.network_mode.startswith(CONTAINER_MODE_PREFIX):
            owner = other.network_mode[len(CONTAINER_MODE_PREFIX):]
            problems.append(where.error(
                path, f"{mode}: {target} itself shares the namespace of {owner} (network_mode {other.network_mode}); "
                      f"use container:{owner}",
            ))


def _check_addresses(
    containers: dict[str, Container],
    networks: dict[str, Network],
    where: SourceMap,
    problems: list[ConfigError],
) -> None:
    """Check static addresses against their subnet, gateway and each other."""
    owners: dict[tuple[str, IPv4Address], str] = {}
    for container in containers.values():
        for attach in container.attachments:
            net = networks.get(attach.network)
            address = attach.ipv4_address
            if address is None or net is None:  # no static address, or the network is broken already
                continue
            path = ("containers", container.name, "networks", net.name, "ipv4_address")
            reason = _not_a_host(address, net.subnet)
            if reason:
                problems.append(where.error(path, f"{address} {reason} (network {net.name})"))
            elif address == net.gateway:
                problems.append(where.error(path, f"{address} is the gateway of network {net.name}"))
            elif (net.name, address) in owners:
                owner = owners[net.name, address]
                problem = f"{address} is already assigned to container {owner} on network {net.name}"
                problems.append(where.error(path, problem))
            else:
                owners[net.name, address] = container.name
