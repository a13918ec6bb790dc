"""The CNI commands on the host's control plane, one container at a time.

The host is the network namespace the plugin runs in, as for every fastnet command. A CNI
network names a fastnet project and a network in it (both default to the CNI name):

- a project no file holds (its state's source is `cni`) is made by the first ADD, network
  included, and removed with everything it made by the last DEL;
- a project `fastnet up` runs (`"project": "shop", "network": "front"`) must already have the
  network; its containers and the CNI ones share it and the host's one datapath.

A container comes in as ContainerSpec.origin "cni": `fastnet up`/`down` of the file keep it,
and DEL/GC remove only such containers. Its namespace is the runtime's: bound (a reference)
at rt/netns/.cni/<project>/<container>, released on DEL, never deleted and never entered to
kill anything. ADD runs the same preflight as `up` and the same single-object steps with an
undo journal, so a failed ADD leaves nothing behind (a delegated ipam allocation included).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import socket
from ipaddress import IPv4Address

from pyroute2 import IPRoute

from ...datapath.errors import FastnetError
from .. import linux, netdrivers, observe, sandbox
from .. import state as statestore
from ..backends import backend_for
from ..dns import RESOLVER_ADDRESS
from ..dns import notify as dns_notify
from ..engine import UpError, default_uplink, one_line, preflight, settle_after_rollback
from ..host import Host, HostError, current_host, enter_host_mounts, ensure_running, locked
from ..ipam import IpamError, allocate
from ..links import delete_link
from ..model import ORIGIN_CNI, SOURCE_CNI, Conntrack
from ..names import NAME_MAX, name_problem
from ..netdrivers.overlay import network_key
from ..project import Journal, Project
from ..spec import ContainerSpec, InterfaceSpec, NetworkSpec, ProjectSpec, host_ifname, link_alias
from ..state import ProjectState, port_key
from ..store import Store, StoreError
from . import ipam
from .config import Call, NetConf
from .spec import (CHECK_FAILED, FAILED, INVALID_CONFIG, INVALID_ENVIRONMENT, NOT_AVAILABLE, NOT_AVAILABLE_LIMITED,
                   UNKNOWN_CONTAINER, Attachment, CniError, Interface, first_ipv4, reshape, result)

ADOPTED_DIR = ".cni"  # under rt/netns/: never a project's directory (names start with [a-z0-9])
DEFAULT_BACKEND = "ebpf"
NS_GET_NSTYPE = 0xB703  # ioctl on a namespace file (linux/nsfs.h): its CLONE_NEW* type


def adopted_netns(project: str, container: str) -> str:
    return f"{ADOPTED_DIR}/{project}/{container}"


def container_name(call: Call) -> str:
    """The fastnet name of a runtime's container: the pod/container name the runtime passes
    (K8S_POD_NAME, which podman sets to the container's name) when it is a valid name, else
    `cni-` and the first 12 characters of its id."""
    pod = (call.arg("K8S_POD_NAME") or "").lower()
    if pod and name_problem("container", pod, NAME_MAX) is None:
        return pod
    return "cni-" + call.container_id[:12].lower()


def _record(st: ProjectState | None, conf: NetConf, container_id: str, ifname: str) -> str | None:
    """The container of the project attached by (CNI network, container id, ifname)."""
    if st is None:
        return None
    return next((name for name, r in st.cni.items()
                 if (r["cni_network"], r["container_id"], r["ifname"]) == (conf.name, container_id, ifname)), None)


def _load(host: Host, project: str) -> ProjectState | None:
    try:
        return statestore.load(host, project)
    except statestore.StateError as exc:
        raise CniError(FAILED, str(exc)) from None


def _open_netns(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {path}: {exc.strerror}") from None
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        kind = None
    if kind != linux.CLONE_NEWNET:
        os.close(fd)
        raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {path} is not a network namespace")
    return fd


# -- ADD ------------------------------------------------------------------------------------
def add(conf: NetConf, call: Call, env: dict[str, str]) -> dict:
    host = current_host()
    fd = _open_netns(call.netns)  # before joining the keeper's mounts: the path is the runtime's
    try:
        with locked(host):
            return _add(host, conf, call, env, fd)
    finally:
        os.close(fd)


def _network(conf: NetConf, st: ProjectState | None, others: list[ProjectState],
             delegated: IPv4Address | None, delegated_gw: IPv4Address | None, delegated_len: int | None) -> tuple[NetworkSpec, bool]:
    """The network the container joins, and whether this ADD creates it."""
    net = st.spec.networks.get(conf.network) if st is not None else None
    if net is not None:
        if conf.store is not None and conf.driver != net.driver:
            raise CniError(INVALID_CONFIG, f"network {conf.network} of project {conf.project} is a {net.driver} "
                           f"network, not {conf.driver}")
        if conf.subnet is not None and (conf.subnet, conf.gateway) != (net.subnet, net.gateway):
            raise CniError(INVALID_CONFIG, f"network {conf.network} of project {conf.project} has subnet {net.subnet} "
                           f"and gateway {net.gateway}, not {conf.subnet} and {conf.gateway}")
        return net, False
    if st is not None and st.source != SOURCE_CNI:
        raise CniError(INVALID_CONFIG, f"project {conf.project} (from {st.source}) has no network {conf.network}")
    subnet, gateway = conf.subnet, conf.gateway
    if subnet is None and delegated is not None:
        from ipaddress import IPv4Interface

        subnet = IPv4Interface(f"{delegated}/{delegated_len}").network
        gateway = delegated_gw or subnet.network_address + 1
    if subnet is None:
        raise CniError(INVALID_CONFIG, "network configuration: subnet is missing (or an ipam section to take it from)")
    if conf.subnet is not None and delegated_gw is not None and conf.gateway is None:
        gateway = delegated_gw
    used = {n.net_id for o in others for n in o.spec.networks.values()}
    used |= {n.net_id for n in st.spec.networks.values()} if st is not None else set()
    net_id = next(i for i in range(1, len(used) + 2) if i not in used)
    return NetworkSpec(conf.network, net_id, subnet, gateway, driver=conf.driver), True


def _address(net: NetworkSpec, st: ProjectState | None, cname: str, static: IPv4Address | None,
             taken: frozenset[IPv4Address], claimed: dict[str, IPv4Address]) -> IPv4Address:
    """`taken`: addresses held beyond this host (an overlay's other hosts); `claimed`: those the
    store records as this project's, by container (a container of that name gets its own back)."""
    held = [(c.name, i.ipv4) for c in (st.spec.containers.values() if st else ()) if (i := c.interface(net.name))]
    try:
        return allocate(net, [*held, (cname, static)], claimed, taken)[cname]
    except IpamError as exc:
        raise CniError(FAILED, str(exc)) from None


def _add(host: Host, conf: NetConf, call: Call, env: dict[str, str], fd: int) -> dict:
    st = _load(host, conf.project)
    try:
        others = statestore.load_all(host, besides=conf.project)
    except statestore.StateError as exc:
        raise CniError(FAILED, str(exc)) from None
    cname = container_name(call)
    if (held := _record(st, conf, call.container_id, call.ifname)) is not None:
        raise CniError(FAILED, f"container {call.container_id} is already attached to {conf.name} "
                       f"as {conf.project}/{held} ({call.ifname}): DEL it first")
    if st is not None and cname in st.spec.containers:
        raise CniError(FAILED, f"project {conf.project} already has a container named {cname}")
    delegated = None
    if conf.ipam is not None:
        delegated = first_ipv4(ipam.run("ADD", call, conf.raw, env))
    try:
        return _add_with(host, conf, call, env, fd, st, others, cname, delegated)
    except BaseException:
        if conf.ipam is not None:
            with contextlib.suppress(CniError):
                ipam.run("DEL", call, conf.raw, env)
        raise


def _add_with(host: Host, conf: NetConf, call: Call, env: dict[str, str], fd: int, st: ProjectState | None,
              others: list[ProjectState], cname: str, delegated) -> dict:
    net, new_net = _network(conf, st, others, delegated and delegated.address, delegated and delegated.gateway,
                            delegated and delegated.prefixlen)
    if st is not None and conf.store is not None and conf.store != st.spec.store:
        raise CniError(INVALID_CONFIG, f"project {conf.project} uses store {st.spec.store or '(none)'}, "
                       f"the configuration {conf.store}")
    static = IPv4Address(a) if (a := call.arg("IP")) else None
    if conf.ip is not None:
        if static is not None and static != conf.ip:
            raise CniError(INVALID_CONFIG, f"runtimeConfig.ips asks for {conf.ip}, CNI_ARGS IP for {static}")
        static = conf.ip
    if delegated is not None:
        if delegated.address not in net.subnet:
            raise CniError(INVALID_CONFIG, f"ipam gave {delegated.address}, outside network {net.name} ({net.subnet})")
        static = delegated.address
    driver = netdrivers.of(net)
    with IPRoute() as ipr:
        uplink = (st.spec.uplink if st is not None else None) or conf.uplink or default_uplink(ipr)
        found = ipr.link_lookup(ifname=uplink) if uplink else []
        uplink_mtu = observe.link_mtu(ipr, found[0]) or None if found else None
    # as `up` sizes a bridge or overlay network's interfaces: its mtu:, else the uplink's less
    # what the driver's encapsulation takes
    mtu = (net.mtu or (uplink_mtu - driver.mtu_overhead if uplink_mtu else None)) if driver.sets_mtu else None
    optional = {"store": conf.store, "vxlan_port": conf.vxlan_port}
    base = st.spec if st is not None else ProjectSpec(
        conf.project, DEFAULT_BACKEND, conf.uplink, conntrack=others[0].spec.conntrack if others else Conntrack(),
        **{k: v for k, v in optional.items() if v is not None})

    def rebuild(taken: dict | None = None, claimed: dict | None = None) -> ProjectSpec:
        """The project with the container in it; its address avoids `taken` and prefers
        `claimed` (both per network, from an overlay's store: see NetworkDriver.settle)."""
        address = _address(net, st, cname, static, (taken or {}).get(net.name, frozenset()),
                           (claimed or {}).get(net.name, {}))
        iface = InterfaceSpec(
            network=net.name, ifname=call.ifname, host_ifname=host_ifname(conf.project, cname, net.name),
            alias=link_alias(conf.project, cname, net.name), ipv4=address, prefixlen=net.subnet.prefixlen,
            gateway=net.gateway, default_route=not net.internal, aliases=conf.aliases, mtu=mtu,
        )
        c = ContainerSpec(cname, adopted_netns(conf.project, cname), (iface,), None, conf.publish, None, ORIGIN_CNI)
        return dataclasses.replace(base, uplink=base.uplink or uplink, networks={**base.networks, net.name: net},
                                   containers={**base.containers, cname: c})

    desired = rebuild()
    try:
        # an overlay: the network joined in the store and the address claimed there, before
        # anything is made on this host (as `up` does)
        desired = driver.settle(desired, rebuild, st.spec if st is not None else None)
    except FastnetError as exc:
        raise CniError(FAILED, one_line(exc)) from None
    try:
        return _make(host, conf, call, fd, st, others, desired, cname, new_net)
    except BaseException:
        with IPRoute() as ipr:
            driver.release_addresses(ipr, desired, desired.networks[net.name], [cname])
        raise


def _make(host: Host, conf: NetConf, call: Call, fd: int, st: ProjectState | None, others: list[ProjectState],
          desired: ProjectSpec, cname: str, new_net: bool) -> dict:
    """Preflight, then the network (when new), the container and its interface, with an undo
    journal; the state saved and the agent told."""
    net, c = desired.networks[conf.network], desired.containers[cname]
    iface, address = c.interfaces[0], c.interfaces[0].ipv4
    with IPRoute() as ipr:
        try:
            preflight(host, desired, st, others, ipr)
        except UpError as exc:
            raise CniError(FAILED, str(exc)) from None
    try:
        keeper = ensure_running(host)
    except HostError as exc:
        raise CniError(FAILED, str(exc)) from None
    enter_host_mounts(keeper)
    if st is None:
        st = ProjectState(spec=dataclasses.replace(desired, networks={}, containers={}), source=SOURCE_CNI)
    backend = backend_for(st.spec.backend, host, st.name)
    journal = Journal()
    with IPRoute() as ipr:
        project = Project(host, st, backend, ipr)
        try:
            backend.prepare(desired)
            if new_net:
                project.add_network(net, journal)
            path = host.netns_dir / c.netns
            sandbox.adopt(fd, path)
            journal.add(f"namespace of {cname}", lambda: sandbox.release(path))
            project.create_container(c, journal)
            project.attach_interface(cname, iface, journal)
            st.spec.containers[cname] = c  # with its published ports
            if st.spec.uplink is None:
                st.spec = dataclasses.replace(st.spec, uplink=desired.uplink)
            st.cni[cname] = {"cni_network": conf.name, "container_id": call.container_id, "ifname": call.ifname,
                             "netns": call.netns, "network": net.name}
            backend.sync(st)
        except BaseException as exc:
            undo = journal.rollback()
            st.cni.pop(cname, None)
            settle_after_rollback(host, st, backend)
            detail = f" (rollback: {'; '.join(undo)})" if undo else ""
            raise CniError(FAILED, f"{one_line(exc)}; rolled back{detail}") from exc
        statestore.save(host, st)
        mac = ipr.get_links(st.ports[port_key(cname, net.name)])[0].get_attr("IFLA_ADDRESS")
    dns_notify.reload(host, st.name)
    dns = conf.raw.get("dns") or {}
    att = Attachment(
        host=Interface(iface.host_ifname, mac), container=Interface(call.ifname, iface.mac, call.netns),
        address=address, prefixlen=iface.prefixlen, gateway=net.gateway, default_route=iface.default_route,
        nameservers=(RESOLVER_ADDRESS,), search=tuple(dns.get("search", ())),
    )
    prev = reshape(conf.version, conf.prev_result) if conf.prev_result else None
    return result(conf.version, att, prev)


# -- DEL and GC -----------------------------------------------------------------------------
def delete(conf: NetConf, call: Call, env: dict[str, str]) -> None:
    """Idempotent: a DEL repeated, after the namespace is gone, or with no state, succeeds."""
    host = current_host()
    errors: list[str] = []
    with locked(host):
        try:
            st = statestore.load(host, conf.project)
        except statestore.StateError as exc:
            st, errors = None, [str(exc)]
        keeper = host.live_keeper()
        if keeper is not None:
            enter_host_mounts(keeper)
        cname = _record(st, conf, call.container_id, call.ifname)
        if cname is not None:
            errors += _detach(host, st, [cname])
        elif keeper is not None:  # no record: what a killed ADD may have left, by its exact names
            errors += _sweep(host, conf, container_name(call))
    if conf.ipam is not None:
        try:
            ipam.run("DEL", call, conf.raw, env)
        except CniError as exc:
            errors.append(str(exc))
    if errors:
        raise CniError(FAILED, "; ".join(errors))


def _sweep(host: Host, conf: NetConf, cname: str) -> list[str]:
    errors = []
    try:
        with IPRoute() as ipr:
            name = host_ifname(conf.project, cname, conf.network)
            found = ipr.link_lookup(ifname=name)
            if found and ipr.get_links(found[0])[0].get_attr("IFLA_IFALIAS") == link_alias(conf.project, cname, conf.network):
                delete_link(ipr, name)
        sandbox.release(host.netns_dir / adopted_netns(conf.project, cname))
    except Exception as exc:
        errors.append(f"container {cname}: {exc}")
    return errors


def _detach(host: Host, st: ProjectState, names: list[str]) -> list[str]:
    """Remove CNI containers of the project; the last one of a project no file holds takes
    the project with it. Keeps going past errors."""
    backend = backend_for(st.spec.backend, host, st.name)
    errors: list[str] = []
    with IPRoute() as ipr:
        project = Project(host, st, backend, ipr)
        for cname in names:
            c = st.spec.containers.get(cname)
            errors += project.remove_container(cname)
            st.cni.pop(cname, None)
            for i in c.interfaces if c is not None else ():  # an overlay's address claim: free for others
                if (net := st.spec.networks.get(i.network)) is not None:
                    netdrivers.of(net).release_addresses(ipr, st.spec, net, [cname])
        if st.source == SOURCE_CNI and not st.spec.containers:
            for net in list(st.spec.networks.values()):
                try:
                    project.remove_network(net)
                except Exception as exc:
                    errors.append(f"network {net.name}: {exc}")
            for d in (host.netns_dir / ADOPTED_DIR / st.name, host.netns_dir / ADOPTED_DIR):
                with contextlib.suppress(OSError):
                    d.rmdir()
    try:
        backend.prepare(st.spec)
    except Exception as exc:
        errors.append(f"{backend.name} datapath: {exc}")
    settle_after_rollback(host, st, backend)  # saves and syncs, or forgets the project and stops an idle keeper
    return errors


def gc(conf: NetConf, call: Call, env: dict[str, str]) -> None:
    """Remove every attachment of this CNI network that is not among the valid ones."""
    valid = set(conf.valid_attachments or ())
    host = current_host()
    with locked(host):
        st = _load(host, conf.project)
        if st is None:
            return
        stale = [name for name, r in st.cni.items()
                 if r["cni_network"] == conf.name and (r["container_id"], r["ifname"]) not in valid]
        if not stale:
            return
        records = [st.cni[name] for name in stale]
        keeper = host.live_keeper()
        if keeper is not None:
            enter_host_mounts(keeper)
        errors = _detach(host, st, stale)
    if conf.ipam is not None:
        for r in records:
            try:
                ipam.run("DEL", dataclasses.replace(call, container_id=r["container_id"], ifname=r["ifname"]), conf.raw,
                         {**env, "CNI_CONTAINERID": r["container_id"], "CNI_IFNAME": r["ifname"], "CNI_NETNS": ""})
            except CniError as exc:
                errors.append(str(exc))
    if errors:
        raise CniError(FAILED, "; ".join(errors))


# -- CHECK and STATUS -----------------------------------------------------------------------
def check(conf: NetConf, call: Call, env: dict[str, str]) -> None:
    host = current_host()
    fd = _open_netns(call.netns)
    try:
        with locked(host):
            _check(host, conf, call, fd)
    finally:
        os.close(fd)
    if conf.ipam is not None:
        ipam.run("CHECK", call, conf.raw, env)


def _check(host: Host, conf: NetConf, call: Call, fd: int) -> None:
    st = _load(host, conf.project)
    cname = _record(st, conf, call.container_id, call.ifname)
    if cname is None:
        raise CniError(UNKNOWN_CONTAINER, f"container {call.container_id} ({call.ifname}) is not attached to {conf.name}")
    c = st.spec.containers[cname]
    iface = c.interfaces[0]
    keeper = host.live_keeper()
    if keeper is None:
        raise CniError(CHECK_FAILED, "the host's fastnet keeper is not running")
    enter_host_mounts(keeper)
    path = host.netns_dir / c.netns
    if not sandbox.alive(path) or os.fstat(fd).st_ino != os.stat(path).st_ino:
        raise CniError(CHECK_FAILED, f"container {cname}: CNI_NETNS is not the namespace ADD was given")
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=iface.host_ifname)
        if not found or found[0] != st.ports.get(port_key(cname, iface.network)):
            raise CniError(CHECK_FAILED, f"container {cname}: host interface {iface.host_ifname} is gone")
    with sandbox.netlink(path) as nipr:
        found = nipr.link_lookup(ifname=iface.ifname)
        addrs = {a.get_attr("IFA_ADDRESS") for a in nipr.get_addr(index=found[0], family=socket.AF_INET)} if found else set()
    if not found:
        raise CniError(CHECK_FAILED, f"container {cname}: interface {iface.ifname} is gone")
    if str(iface.ipv4) not in addrs:
        raise CniError(CHECK_FAILED, f"container {cname}: {iface.ifname} lost its address {iface.ipv4}")
    if conf.prev_result is not None:
        want = f"{iface.ipv4}/{iface.prefixlen}"
        if want not in {ip.get("address") for ip in conf.prev_result.get("ips", [])}:
            raise CniError(CHECK_FAILED, f"container {cname}: prevResult does not hold its address {want}")


def status(conf: NetConf, call: Call, env: dict[str, str]) -> None:
    """Whether an ADD could succeed now (CniError 50), and whether the attached containers are
    served in full (51: the keeper, and with it the resolver, is gone)."""
    host = current_host()
    try:
        st = statestore.load(host, conf.project)
    except statestore.StateError as exc:
        raise CniError(NOT_AVAILABLE, str(exc)) from None
    if st is not None and st.source != SOURCE_CNI and conf.network not in st.spec.networks:
        raise CniError(NOT_AVAILABLE, f"project {conf.project} (from {st.source}) has no network {conf.network}")
    if st is None and conf.subnet is None and conf.ipam is None:
        raise CniError(NOT_AVAILABLE, f"project {conf.project} is not up and the configuration names no subnet")
    if st is not None and st.spec.containers and host.live_keeper() is None:
        raise CniError(NOT_AVAILABLE_LIMITED, "the host's fastnet keeper is not running")
    if conf.ipam is not None:
        ipam.find(conf.ipam["type"], call.path)
    if conf.store is not None:  # an overlay's ADD claims its address there first
        try:
            Store(conf.store).get(network_key(conf.network, "config"))
        except StoreError as exc:
            raise CniError(NOT_AVAILABLE, str(exc)) from None

