"""Translate the networking part of a Compose file into fastnet's own project document.

A Compose file is not validated by a second set of models: it is rewritten, as plain data,
into the document fastnet's own format would be (``networks:``/``containers:``), and that
document then goes through the same pydantic validation and cross-checks as a fastnet file
(``config._check_schema`` and ``config._resolve``). What makes the errors point into the
Compose file is the source map handed along: ``ComposeSourceMap`` knows, for every key path
of the translated document, the Compose key path it came from, and locates errors there::

    compose.yaml:12:9: services.web.ports[0]: invalid port mapping '80:x': ...

Variables are interpolated first, as Compose does (``${PORT:-8080}``), from the environment;
a ``.env`` file is not read. Only what cannot be said in fastnet's document is checked here,
in Compose terms: the Compose schema's keys (unknown ones are errors, known ones fastnet does
not implement are collected for one warning), references between services and networks, the
port syntaxes, and the names derived from the project name.

Names follow Compose: the project is ``name:`` or the file's directory (normalised the way
Compose does: lowercase, only ``[a-z0-9_-]``, no leading ``_``/``-``); networks are
``<project>_<network>`` (or their ``name:``), containers ``<project>-<service>-1`` (or their
``container_name:``). fastnet's limits apply to the results: a project name has at most
12 characters (it prefixes interface names, which have 15), networks and containers 32.
An explicit ``name:`` that is too long is an error; a directory name that is too long is
shortened to its first 7 characters, '-' and 4 hex digits of its hash (deterministic, so
``up`` and ``down`` agree). Derived network and container names that are too long are
errors at the Compose key that produced them.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from ipaddress import IPv4Network
from typing import Any

from .compose_keys import (
    EXTENSION,
    EXTENSION_KEYS,
    IPAM_CONFIG_KEYS,
    IPAM_KEYS,
    NETWORK_KEYS,
    PORT_KEYS,
    SERVICE_KEYS,
    SERVICE_NETWORK_KEYS,
    TOP_KEYS,
    compose_error,
    render_path,
)
from .compose_vars import interpolate
from .names import NAME_MAX, NAME_RE, PROJECT_NAME_MAX
from .source import ConfigError, KeyPath, Pos, SourceMap, describe

__all__ = ["COMPOSE_FILE_NAMES", "ComposeSourceMap", "is_compose", "project_name", "translate"]

# The names `docker compose` looks for in a directory, in its order of preference.
COMPOSE_FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
# Other file names taken as Compose: overrides and variants such as docker-compose.prod.yml.
_COMPOSE_NAME_RE = re.compile(r"^(docker-)?compose[.-][\w.-]*\.ya?ml$")

DEFAULT_NETWORK = "default"  # the network Compose gives services that name none
# Subnets for bridge networks without `ipam`, in Docker's order for its default address
# pools (172.17.0.0/16 is Docker's, and fastnet's, default bridge and is left out).
_AUTO_SUBNETS = tuple(IPv4Network(f"172.{n}.0.0/16") for n in range(18, 32)) + tuple(
    IPv4Network(f"192.168.{n}.0/20") for n in range(0, 256, 16)
)
_FASTNET_DEFAULT_BRIDGE = IPv4Network("172.17.0.0/16")

_PROJECT_STRIP_RE = re.compile(r"[^a-z0-9_-]")
_MODE_KEY = {"macvlan": "macvlan_mode", "ipvlan": "ipvlan_mode"}
MTU_OPTION = "com.docker.network.driver.mtu"


def is_compose(source: str, data: dict[str, Any]) -> bool:
    """A Compose file has a top-level `services:`, or is named like one and has no `containers:`
    (fastnet's own section, so a fastnet file keeps working whatever its name)."""
    base = os.path.basename(source)
    named = base in COMPOSE_FILE_NAMES or bool(_COMPOSE_NAME_RE.match(base))
    return "services" in data or (named and "containers" not in data)


class ComposeSourceMap(SourceMap):
    """Locates errors about the translated document at the Compose keys it came from.

    ``routes`` maps a path of the translated document to a Compose path; a path without its
    own route uses its longest routed prefix plus the rest of the path unchanged (so that
    e.g. ``containers.<c>.command[2]`` lands on ``services.<s>.command[2]``).
    """

    def __init__(self, compose: SourceMap) -> None:
        super().__init__(compose.source)
        self.compose = compose
        self.routes: dict[KeyPath, KeyPath] = {(): ()}

    def route(self, path: KeyPath, compose_path: KeyPath) -> None:
        self.routes[path] = compose_path

    def to_compose(self, path: KeyPath) -> KeyPath:
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.routes:
                return (*self.routes[path[:cut]], *path[cut:])
        return ()  # not reached: () is always routed

    def locate(self, path: KeyPath, *, key: bool = False) -> Pos:
        return self.compose.locate(self.to_compose(path), key=key)

    def error(self, path: KeyPath, problem: str, *, at: KeyPath | None = None, key: bool = False) -> ConfigError:
        line, col = self.locate(path if at is None else at, key=key)
        for fastnet_words, compose_words in _IN_COMPOSE_WORDS:
            problem = problem.replace(fastnet_words, compose_words)
        return ConfigError(self.source, line + 1, col + 1, render_path(self.to_compose(path)), problem)


# fastnet's messages quote its own keys here and there; in a Compose file, say Compose's.
_IN_COMPOSE_WORDS = (
    ("'publish'", "'ports'"),
    ("'subnet: 10.90.1.0/24'", "'ipam: {config: [{subnet: 10.90.1.0/24}]}'"),
)


def project_name(data: dict[str, Any], project_dir: str, where: SourceMap) -> str:
    """The Compose project name: `name:` as written (it must already be normal, as Compose
    requires), else the directory's name normalised and, if too long for fastnet, shortened."""
    if "name" in data:
        name = data["name"]
        if not isinstance(name, str):
            raise compose_error(where, ("name",), f"expected a string, got {describe(name)}")
        if not name or _normalise(name) != name:
            raise compose_error(
                where, ("name",),
                f"invalid project name {name!r}: use lowercase letters, digits, '_' and '-', "
                f"starting with a letter or digit",
            )
        return name  # too long: fastnet's own validation says so at `name:`
    directory = os.path.basename(os.path.abspath(project_dir))
    name = _normalise(directory)
    if not name:
        raise compose_error(
            where, (), f"cannot derive a project name from the directory name {directory!r}; set 'name:'"
        )
    if len(name) > PROJECT_NAME_MAX:
        digest = hashlib.sha1(name.encode()).hexdigest()[:4]
        name = f"{name[:PROJECT_NAME_MAX - 5].rstrip('_-')}-{digest}"
    return name


def _normalise(name: str) -> str:
    """Compose's normalisation of project names."""
    return _PROJECT_STRIP_RE.sub("", name.lower()).lstrip("_-")


def translate(
    data: dict[str, Any], where: SourceMap, project_dir: str, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], ComposeSourceMap, tuple[str, ...]]:
    """The fastnet document for a Compose file (plain data as read by source.read_yaml), the
    source map that places its errors in the Compose file, and the warnings (one line for the
    keys ignored, one for variables that are not set). ``environ`` (default: the process
    environment) supplies the variables that Compose interpolates."""
    data, unset = interpolate(data, where, os.environ if environ is None else environ)
    doc, source_map, warnings = _Translator(data, where, project_dir).run()
    if unset:
        listed = ", ".join(unset)
        warnings += (f"{where.source}: variables not set, replaced by an empty string (as Compose does): {listed}",)
    return doc, source_map, warnings


class _Translator:
    def __init__(self, data: dict[str, Any], where: SourceMap, project_dir: str) -> None:
        self.data = data
        self.cw = where  # positions in the Compose file
        self.map = ComposeSourceMap(where)
        self.project_dir = project_dir
        self.ignored: list[KeyPath] = []
        self.doc: dict[str, Any] = {}

    # ---------------------------------------------------------------- helpers

    def fail(self, path: KeyPath, problem: str, *, key: bool = False) -> ConfigError:
        return compose_error(self.cw, path, problem, key=key)

    def mapping(self, value: Any, path: KeyPath, what: str = "a mapping") -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, f"expected {what}, got {describe(value)}")
        return value

    def keys(self, node: dict[str, Any], path: KeyPath, honoured: tuple[str, ...], known: tuple[str, ...]) -> None:
        """Unknown keys are errors; known ones fastnet does not honour are noted for the warning."""
        for key in node:
            if key.startswith("x-") or key in honoured:
                continue
            if key in known:
                self.ignored.append((*path, key))
                continue
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.fail((*path, key), f"unknown key {key!r} in a Compose file{hint}", key=True)

    def put(self, doc_path: KeyPath, value: Any, compose_path: KeyPath) -> None:
        node = self.doc
        for part in doc_path[:-1]:
            node = node.setdefault(part, {})
        node[doc_path[-1]] = value
        self.map.route(doc_path, compose_path)

    def check_name(self, kind: str, name: str, max_len: int, path: KeyPath, how: str) -> None:
        if not NAME_RE.fullmatch(name):
            raise self.fail(
                path, f"{kind} name {name!r} ({how}) is not a valid fastnet name: use lowercase letters, "
                f"digits, '_', '.' and '-', starting with a letter or digit", key=True,
            )
        if len(name) > max_len:
            raise self.fail(
                path, f"{kind} name {name!r} ({how}) is too long: {len(name)} characters, at most {max_len}",
                key=True,
            )

    # ---------------------------------------------------------------- the file

    def run(self) -> tuple[dict[str, Any], ComposeSourceMap, tuple[str, ...]]:
        data = self.data
        self.keys(data, (), ("name", "services", "networks"), TOP_KEYS)
        self.project = project_name(data, self.project_dir, self.cw)
        self.put(("name",), self.project, ("name",) if "name" in data else ())
        self.extension(data.get(EXTENSION))

        networks = self.mapping(data.get("networks"), ("networks",))
        services = self.mapping(data.get("services"), ("services",))
        self.network_names = self.unique("network", networks, self.network_name)
        self.container_names = self.unique("container", services, self.container_name)

        self.doc["networks"] = {}
        self.map.route(("networks",), ("networks",))
        for net, spec in networks.items():
            self.network(net, spec)
        self.doc["containers"] = {}
        self.map.route(("containers",), ("services",))
        self.default_used = False
        for svc, spec in services.items():
            self.service(svc, spec)
        if self.default_used and DEFAULT_NETWORK not in networks:
            name = f"{self.project}_{DEFAULT_NETWORK}"
            self.check_name("network", name, NAME_MAX, ("services",), "the project's default network")
            taken_by = next((net for net, n in self.network_names.items() if n == name), None)
            if taken_by is not None:
                raise self.fail(
                    ("networks", taken_by), f"network name {name!r} is the name of the project's default "
                    f"network, which services without 'networks:' join", key=True,
                )
            self.put(("networks", name), {}, ())  # no place in the file: errors about it point at its top
        self.auto_subnets()

        warnings = ()
        if self.ignored:
            listed = ", ".join(dict.fromkeys(render_path(p) for p in self.ignored))
            warnings = (f"{self.cw.source}: ignoring Compose keys fastnet does not implement: {listed}",)
        return self.doc, self.map, warnings

    def unique(self, kind: str, entries: dict[str, Any], derive: Callable[[str, Any], str]) -> dict[str, str]:
        """fastnet names derived for Compose entries; two entries may not end up with one name
        (e.g. a `container_name:` equal to another service's derived name)."""
        names: dict[str, str] = {}
        section = "services" if kind == "container" else "networks"
        for entry, spec in entries.items():
            name = derive(entry, spec)
            owner = next((e for e, n in names.items() if n == name), None)
            if owner is not None:
                raise self.fail(
                    (section, entry), f"{kind} name {name!r} is already the name of {section}.{owner}", key=True
                )
            names[entry] = name
        return names

    def extension(self, value: Any) -> None:
        """`x-fastnet:` carries fastnet settings Compose has no key for (uplink, backend, conntrack,
        publish_ephemeral_ports)."""
        if value is None:
            return
        ext = self.mapping(value, (EXTENSION,))
        for key, item in ext.items():
            if key not in EXTENSION_KEYS:
                raise self.fail(
                    (EXTENSION, key), f"unknown key {key!r} (valid keys: {', '.join(EXTENSION_KEYS)})", key=True
                )
            self.put((key,), item, (EXTENSION, key))

    def explicit_name(self, kind: str, spec: dict, path: KeyPath, key: str) -> str | None:
        """The name set by `key` (a network's `name:`, a service's `container_name:`), checked;
        None when the file leaves it to the project's naming."""
        if key not in spec:
            return None
        name = spec[key]
        if not isinstance(name, str):
            raise self.fail((*path, key), f"expected a string, got {describe(name)}")
        self.check_name(kind, name, NAME_MAX, (*path, key), f"its '{key}:'")
        return name

    # ---------------------------------------------------------------- networks

    def network_name(self, net: str, spec: Any) -> str:
        path = ("networks", net)
        spec = self.mapping(spec, path)
        if (name := self.explicit_name("network", spec, path, "name")) is not None:
            return name
        name = f"{self.project}_{net}"
        self.check_name("network", name, NAME_MAX, path, f"project {self.project!r} + '_' + network {net!r}")
        return name

    def network(self, net: str, spec: Any) -> None:
        cpath = ("networks", net)
        spec = self.mapping(spec, cpath)
        self.keys(spec, cpath, ("name", "driver", "driver_opts", "internal", "ipam", "external"), NETWORK_KEYS)
        if spec.get("external"):
            raise self.fail(
                (*cpath, "external"),
                "external networks are not supported: fastnet creates every network of the project",
            )
        dpath = ("networks", self.network_names[net])
        self.put(dpath, {}, cpath)
        for key in ("driver", "internal"):
            if key in spec:
                self.put((*dpath, key), spec[key], (*cpath, key))
        self.ipam(spec.get("ipam"), cpath, dpath)
        self.driver_opts(spec, cpath, dpath)

    def ipam(self, value: Any, cpath: KeyPath, dpath: KeyPath) -> None:
        if value is None:
            return
        ipam = self.mapping(value, (*cpath, "ipam"))
        self.keys(ipam, (*cpath, "ipam"), ("config",), IPAM_KEYS)
        configs = ipam.get("config")
        if configs is None:
            return
        cfg_path = (*cpath, "ipam", "config")
        if not isinstance(configs, list):
            raise self.fail(cfg_path, f"expected a list, got {describe(configs)}")
        if len(configs) > 1:
            raise self.fail(
                (*cfg_path, 1), "fastnet networks have one IPv4 subnet: give one ipam.config entry"
            )
        for index, item in enumerate(configs):
            item = self.mapping(item, (*cfg_path, index))
            self.keys(item, (*cfg_path, index), ("subnet", "gateway"), IPAM_CONFIG_KEYS)
            for key in ("subnet", "gateway"):
                if key in item:
                    self.put((*dpath, key), item[key], (*cfg_path, index, key))

    def driver_opts(self, spec: dict[str, Any], cpath: KeyPath, dpath: KeyPath) -> None:
        """`parent` and the driver's own mode option become fastnet's `parent` and `mode`,
        `com.docker.network.driver.mtu` its `mtu` (Compose files often write it as a string);
        options of other drivers (e.g. com.docker.network.bridge.*) are ignored."""
        if "driver_opts" not in spec:
            return
        opts_path = (*cpath, "driver_opts")
        opts = self.mapping(spec["driver_opts"], opts_path)
        driver = spec.get("driver")
        for key, value in opts.items():
            if key == "parent" and driver in _MODE_KEY:
                self.put((*dpath, "parent"), value, (*opts_path, key))
            elif driver in _MODE_KEY and key == _MODE_KEY[driver]:
                self.put((*dpath, "mode"), value, (*opts_path, key))
            elif key == MTU_OPTION:
                if isinstance(value, str) and value.strip().isdigit():
                    value = int(value)
                self.put((*dpath, "mtu"), value, (*opts_path, key))
            else:
                self.ignored.append((*opts_path, key))

    def auto_subnets(self) -> None:
        """Bridge networks without `ipam` get a subnet the way Docker's default pools hand them
        out: the first free one, in file order (stable across runs of the same file)."""
        taken = []
        for spec in self.doc["networks"].values():
            try:
                taken.append(IPv4Network(spec["subnet"]))
            except (KeyError, ValueError, TypeError):
                pass  # no subnet yet, or a bad one that fastnet's validation reports
        if any("bridge" in (c.get("networks") or ()) for c in self.doc["containers"].values()):
            taken.append(_FASTNET_DEFAULT_BRIDGE)
        for name, spec in self.doc["networks"].items():
            if "subnet" in spec or spec.get("driver", "bridge") != "bridge":
                continue  # macvlan/ipvlan need the segment's subnet: fastnet's validation asks for it
            free = next((s for s in _AUTO_SUBNETS if not any(s.overlaps(t) for t in taken)), None)
            if free is None:
                problem = "no free subnet left in Docker's default pools; set ipam.config[0].subnet"
                raise self.map.error(("networks", name), problem, key=True)
            spec["subnet"] = str(free)
            taken.append(free)

    # ---------------------------------------------------------------- services

    def container_name(self, svc: str, spec: Any) -> str:
        path = ("services", svc)
        spec = self.mapping(spec, path)
        if not NAME_RE.fullmatch(svc):
            raise self.fail(
                path, f"invalid service name {svc!r}: fastnet names use lowercase letters, digits, '_', '.' "
                f"and '-', starting with a letter or digit", key=True,
            )
        if (name := self.explicit_name("container", spec, path, "container_name")) is not None:
            return name
        name = f"{self.project}-{svc}-1"
        self.check_name(
            "container", name, NAME_MAX, path,
            f"project {self.project!r} + service {svc!r} + '-1'; shorten the service name or set container_name",
        )
        return name

    def service(self, svc: str, spec: Any) -> None:
        cpath = ("services", svc)
        spec = self.mapping(spec, cpath)
        self.keys(spec, cpath, ("command", "ports", "networks", "network_mode", "container_name"), SERVICE_KEYS)
        dpath = ("containers", self.container_names[svc])
        self.put(dpath, {}, cpath)
        if "command" in spec:
            self.put((*dpath, "command"), spec["command"], (*cpath, "command"))
        if "ports" in spec:
            self.put((*dpath, "publish"), self.ports(spec["ports"], (*cpath, "ports")), (*cpath, "ports"))
        if "network_mode" in spec:
            if "networks" in spec:
                raise self.fail(
                    (*cpath, "networks"), "'networks' cannot be combined with 'network_mode'", key=True
                )
            self.network_mode(svc, spec["network_mode"], cpath, dpath)
        else:
            self.attachments(svc, spec.get("networks"), cpath, dpath)

    def network_mode(self, svc: str, mode: Any, cpath: KeyPath, dpath: KeyPath) -> None:
        mpath = (*cpath, "network_mode")
        if not isinstance(mode, str):
            raise self.fail(mpath, f"expected a string, got {describe(mode)}")
        if mode in ("bridge", "default"):
            # Docker's default bridge, which is fastnet's default network "bridge" (no names resolve there).
            self.put((*dpath, "networks"), ["bridge"], mpath)
            return
        if mode.startswith("service:"):
            other = mode.removeprefix("service:")
            if other not in self.container_names:
                known = ", ".join(self.container_names) or "none"
                raise self.fail(mpath, f"unknown service {other!r} in {mode!r} (services: {known})")
            if other == svc:
                raise self.fail(mpath, f"service {svc!r} cannot share its own network namespace")
            mode = f"container:{self.container_names[other]}"
        self.put((*dpath, "network_mode"), mode, mpath)

    def attachments(self, svc: str, value: Any, cpath: KeyPath, dpath: KeyPath) -> None:
        """Every attachment gets the service name as an alias, as Compose does, so services
        resolve each other by service name."""
        npath = (*cpath, "networks")
        refs: list[tuple[str, dict[str, Any], KeyPath, bool]]  # network, settings, where, at key
        if value is None:
            self.default_used = True
            refs = [(DEFAULT_NETWORK, {}, cpath, True)]
        elif isinstance(value, list):
            refs = []
            for index, net in enumerate(value):
                if not isinstance(net, str):
                    raise self.fail((*npath, index), f"expected a network name, got {describe(net)}")
                refs.append((net, {}, (*npath, index), False))
        elif isinstance(value, dict):
            refs = []
            for net, settings in value.items():
                settings = self.mapping(settings, (*npath, net))
                self.keys(settings, (*npath, net), ("aliases", "ipv4_address"), SERVICE_NETWORK_KEYS)
                refs.append((net, settings, (*npath, net), True))
        else:
            raise self.fail(
                npath, f"expected a list of network names or a mapping of network name to settings, "
                f"got {describe(value)}",
            )

        attached: dict[str, Any] = {}
        self.put((*dpath, "networks"), attached, npath if value is not None else cpath)
        for net, settings, at, on_key in refs:
            if net == DEFAULT_NETWORK and net not in self.network_names:
                self.default_used = True
                fnet = f"{self.project}_{DEFAULT_NETWORK}"
            elif net in self.network_names:
                fnet = self.network_names[net]
            else:
                known = ", ".join(self.network_names) or "none"
                raise self.fail(at, f"unknown network {net!r} (networks defined in the file: {known})", key=on_key)
            if fnet in attached:
                raise self.fail(at, f"network {net!r} is listed twice", key=on_key)
            apath = (*dpath, "networks", fnet)
            attach: dict[str, Any] = {}
            attached[fnet] = attach
            self.map.route(apath, at)
            if "ipv4_address" in settings:
                attach["ipv4_address"] = settings["ipv4_address"]
                self.map.route((*apath, "ipv4_address"), (*at, "ipv4_address"))
            aliases = settings.get("aliases", [])
            if isinstance(aliases, list):
                if svc not in aliases:
                    self.map.route((*apath, "aliases", len(aliases)), cpath)
                    aliases = [*aliases, svc]
            attach["aliases"] = aliases
            self.map.route((*apath, "aliases"), (*at, "aliases") if "aliases" in settings else cpath)

    # ---------------------------------------------------------------- ports

    def ports(self, value: Any, ppath: KeyPath) -> Any:
        if not isinstance(value, list):
            return value  # fastnet's validation: "expected a list"
        return [self.port(item, (*ppath, index)) for index, item in enumerate(value)]

    def port(self, item: Any, path: KeyPath) -> Any:
        """One `ports:` entry in fastnet's `[IP:]HOST:CONTAINER[/PROTO]` form. Entries without a
        host port (Compose then picks a random one) are errors: fastnet publishes fixed ports."""
        if isinstance(item, bool) or not isinstance(item, (int, str, dict)):
            problem = f"expected a port mapping like \"8080:80\" or a mapping with 'target', got {describe(item)}"
            raise self.fail(path, problem)
        if isinstance(item, int):
            raise self.fail(path, _random_port(str(item)))
        if isinstance(item, str):
            spec = item.partition("/")[0]
            if spec.startswith("["):
                raise self.fail(path, f"invalid port mapping {item!r}: IPv6 host addresses are not supported")
            parts = spec.split(":")
            if len(parts) == 1 or (len(parts) == 3 and parts[1] == ""):
                raise self.fail(path, _random_port(item))
            if parts[0] == "0.0.0.0" and len(parts) == 3:
                return item.removeprefix("0.0.0.0:")  # Compose's "every address" is fastnet's default
            return item  # fastnet's validation checks the rest, at this entry
        return self.long_port(item, path)

    def long_port(self, item: dict[str, Any], path: KeyPath) -> str:
        self.keys(item, path, ("target", "published", "host_ip", "protocol"), PORT_KEYS)
        if "target" not in item:
            raise self.fail(path, "'target' (the container port) is required")
        parts = {}
        for key in ("target", "published"):
            if key in item:
                value = item[key]
                if isinstance(value, bool) or not isinstance(value, (int, str)):
                    raise self.fail((*path, key), f"expected a port number or range, got {describe(value)}")
                parts[key] = str(value)
        if "published" not in parts or parts["published"] == "":
            raise self.fail(path, _random_port(f"target {parts['target']}"))
        for key in ("host_ip", "protocol"):
            if key in item and not isinstance(item[key], str):
                raise self.fail((*path, key), f"expected a string, got {describe(item[key])}")
        host_ip = item.get("host_ip")
        if host_ip and ":" in host_ip:
            raise self.fail((*path, "host_ip"), f"{host_ip!r}: IPv6 host addresses are not supported")
        prefix = f"{host_ip}:" if host_ip and host_ip != "0.0.0.0" else ""
        proto = item.get("protocol", "tcp")
        return f"{prefix}{parts['published']}:{parts['target']}/{proto}"


def _random_port(entry: str) -> str:
    return (
        f"{entry!r} publishes on a random host port, which fastnet does not do: "
        f"give the host port, e.g. \"8080:80\""
    )
