"""The CNI protocol as fastnet speaks it: versions, the error object, and results in the shape
of each version (https://www.cni.dev/docs/spec/). Pure: no I/O.

Result shapes: 0.3.0, 0.3.1 and 0.4.0 give each IP a `"version": "4"`; 1.0.0 and 1.1.0 drop
it. Every other key is the same in the versions fastnet supports.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from ipaddress import IPv4Address

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = SUPPORTED_VERSIONS[-1]

# The spec's well-known error codes (1-99 are reserved to it; 100+ are the plugin's own).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50  # STATUS: the plugin cannot ADD now
NOT_AVAILABLE_LIMITED = 51  # STATUS: and existing containers may have limited connectivity
# fastnet's own
FAILED = 100  # the host's control plane refused or failed the change (rolled back)
CHECK_FAILED = 101  # CHECK found the container's networking not as ADD left it
IPAM_FAILED = 102  # the delegated ipam plugin failed

# The first version that knows each command (VERSION, ADD and DEL: every version).
COMMAND_SINCE = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}


@dataclass
class CniError(Exception):
    """An error the plugin reports as the spec's error object on stdout, exiting non-zero."""

    code: int
    msg: str
    details: str = ""

    def __str__(self) -> str:
        return self.msg

    def to_json(self, version: str) -> str:
        body = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            body["details"] = self.details
        return json.dumps(body)


def parse_version(text: str) -> tuple[int, int, int]:
    parts = text.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(text)
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def at_least(version: str, minimum: str) -> bool:
    return parse_version(version) >= parse_version(minimum)


def check_version(version: str, command: str) -> None:
    """CniError(1) when `version` is unknown to fastnet or too old for `command`."""
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, f"cniVersion {version!r} is not supported",
                       f"supported: {', '.join(SUPPORTED_VERSIONS)}")
    since = COMMAND_SINCE.get(command)
    if since is not None and not at_least(version, since):
        raise CniError(INCOMPATIBLE_VERSION, f"{command} needs cniVersion {since} or later, the config has {version}")


def version_info(requested: str | None) -> dict:
    """The answer to VERSION: the protocol version in use (the caller's, when fastnet speaks it)."""
    used = requested if requested in SUPPORTED_VERSIONS else LATEST
    return {"cniVersion": used, "supportedVersions": list(SUPPORTED_VERSIONS)}


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str
    sandbox: str | None = None  # the container's netns path; None: on the host

    def to_dict(self) -> dict:
        d = {"name": self.name, "mac": self.mac}
        if self.sandbox is not None:
            d["sandbox"] = self.sandbox
        return d


@dataclass(frozen=True)
class Attachment:
    """What one ADD made, independent of the version it is reported in."""

    host: Interface
    container: Interface
    address: IPv4Address
    prefixlen: int
    gateway: IPv4Address
    default_route: bool = True
    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()


def result(version: str, att: Attachment, prev: dict | None = None) -> dict:
    """The ADD result in `version`'s shape. `prev` (a prevResult, already in that shape) keeps
    what earlier plugins of a chain reported: fastnet's interfaces, IP and route are appended."""
    out = json.loads(json.dumps(prev)) if prev else {}
    out["cniVersion"] = version
    interfaces = out.setdefault("interfaces", [])
    base = len(interfaces)
    interfaces += [att.host.to_dict(), att.container.to_dict()]
    ip = {"address": f"{att.address}/{att.prefixlen}", "gateway": str(att.gateway), "interface": base + 1}
    if not at_least(version, "1.0.0"):
        ip = {"version": "4", **ip}
    out.setdefault("ips", []).append(ip)
    if att.default_route:
        out.setdefault("routes", []).append({"dst": "0.0.0.0/0", "gw": str(att.gateway)})
    if att.nameservers or att.search:
        dns = out.setdefault("dns", {})
        dns.setdefault("nameservers", []).extend(n for n in att.nameservers if n not in dns["nameservers"])
        if att.search:
            dns.setdefault("search", []).extend(att.search)
    return out


def reshape(version: str, res: dict) -> dict:
    """A result of any supported version converted to `version`'s shape (a delegated ipam
    plugin may answer in another version than the one fastnet reports)."""
    out = json.loads(json.dumps(res))
    out["cniVersion"] = version
    for ip in out.get("ips", []):
        if at_least(version, "1.0.0"):
            ip.pop("version", None)
        else:
            ip.setdefault("version", "6" if ":" in ip.get("address", "") else "4")
    return out


@dataclass
class IpConfig:
    """The first IPv4 of a result (what a delegated ipam plugin allocated)."""

    address: IPv4Address
    prefixlen: int
    gateway: IPv4Address | None
    routes: list[dict] = field(default_factory=list)


def first_ipv4(res: dict) -> IpConfig:
    from ipaddress import IPv4Interface

    for ip in res.get("ips", []):
        text = ip.get("address", "")
        if ":" in text:
            continue
        try:
            iface = IPv4Interface(text)
        except ValueError as exc:
            raise CniError(DECODE_FAILURE, f"ipam result: invalid address {text!r}") from exc
        gw = ip.get("gateway")
        return IpConfig(iface.ip, iface.network.prefixlen, IPv4Address(gw) if gw else None, res.get("routes", []))
    raise CniError(IPAM_FAILED, "ipam result holds no IPv4 address")
