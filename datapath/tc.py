"""Attach and detach fastnet's programs at the TC hook (clsact, direct action), by netlink.

Each program sits at one fixed (priority, handle) so that an upgrade is a `replace` on the
same slot: there is never a moment without a program on the device.
"""
from __future__ import annotations

import errno
from socket import htons

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_NEWQDISC, RTM_NEWTFILTER, TC_H_CLSACT
from pyroute2.netlink.rtnl.tcmsg import sched_bpf, tcmsg

from . import nlbatch

# pyroute2 0.9 decodes TCA_BPF_* only up to FLAGS; the attached program's id (TCA_BPF_ID,
# uapi pkt_cls.h) is what tells fastnet which build is on a device, so teach it the rest.
if len(sched_bpf.options.nla_map) == 9:
    sched_bpf.options.nla_map = sched_bpf.options.nla_map + (
        ("TCA_BPF_FLAGS_GEN", "uint32"),
        ("TCA_BPF_TAG", "hex"),
        ("TCA_BPF_ID", "uint32"),
    )

INGRESS = "ffff:fff2"
EGRESS = "ffff:fff3"
PRIO = 1
HANDLE = 1
ETH_P_ALL = 0x0003
CLSACT_HANDLE = 0xFFFF0000
TCA_BPF_FLAG_ACT_DIRECT = 1


def ensure_clsact(ipr: IPRoute, ifindex: int) -> bool:
    """Add the clsact qdisc; True if this call created it (so only then may we remove it)."""
    try:
        ipr.tc("add", "clsact", ifindex)
        return True
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise
        return False


def remove_clsact(ipr: IPRoute, ifindex: int) -> None:
    try:
        ipr.tc("del", "clsact", ifindex)
    except NetlinkError as e:
        if e.code not in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
            raise


def attach(ipr: IPRoute, ifindex: int, prog_fd: int, name: str, parent: str = INGRESS) -> None:
    """Install (or atomically replace) the program on the device's ingress or egress."""
    ensure_clsact(ipr, ifindex)
    ipr.tc(
        "replace-filter",
        "bpf",
        ifindex,
        handle=HANDLE,
        fd=prog_fd,
        name=name,
        parent=parent,
        prio=PRIO,
        protocol=ETH_P_ALL,
        classid=1,
        direct_action=True,
    )


def attach_messages(ifindex: int, prog_fd: int, name: str, parent: str = INGRESS) -> list[tcmsg]:
    """What attach() sends for a device that has no clsact yet (one fastnet has just created),
    as messages to send with other requests in one datagram (nlbatch.send): the
    clsact qdisc (`tc qdisc add dev IFINDEX clsact`) and the program in fastnet's slot
    (`tc filter replace dev IFINDEX ingress|egress prio PRIO handle HANDLE protocol all bpf
    direct-action fd PROG_FD name NAME classid 1`), the fields pyroute2's tc() would fill."""
    qdisc = nlbatch.message(tcmsg, RTM_NEWQDISC, nlbatch.CREATE, [("TCA_KIND", "clsact")],
                            {"index": ifindex, "handle": CLSACT_HANDLE, "parent": TC_H_CLSACT})
    options = {"attrs": [
        ("TCA_BPF_CLASSID", 1),
        ("TCA_BPF_FD", prog_fd),
        ("TCA_BPF_NAME", name),
        ("TCA_BPF_FLAGS", TCA_BPF_FLAG_ACT_DIRECT),
    ]}
    bpf = nlbatch.message(tcmsg, RTM_NEWTFILTER, nlbatch.REPLACE, [("TCA_KIND", "bpf"), ("TCA_OPTIONS", options)], {
        "index": ifindex,
        "handle": HANDLE,
        "parent": int(parent.replace(":", ""), 16),  # "ffff:fff2" -> 0xfffffff2
        "info": (PRIO << 16) | htons(ETH_P_ALL),
    })
    return [qdisc, bpf]


def attached(ipr: IPRoute, ifindex: int, parent: str = INGRESS) -> tuple[int, str] | None:
    """(program id, program name) of the filter in fastnet's slot, if any."""
    try:
        filters = ipr.get_filters(ifindex, parent=parent)
    except NetlinkError as e:
        if e.code in (errno.ENODEV, errno.EINVAL, errno.ENOENT):
            return None
        raise
    for f in filters:
        opts = f.get_attr("TCA_OPTIONS")
        if opts is None or f.get_attr("TCA_KIND") != "bpf":
            continue
        prog_id = opts.get_attr("TCA_BPF_ID")
        if prog_id is not None and (f["info"] >> 16) == PRIO:
            return prog_id, opts.get_attr("TCA_BPF_NAME") or ""
    return None


def detach(ipr: IPRoute, ifindex: int, parent: str = INGRESS) -> bool:
    """Remove fastnet's filter from the slot; False if there was none (idempotent)."""
    try:
        ipr.tc("del-filter", "bpf", ifindex, handle=HANDLE, parent=parent, prio=PRIO, protocol=ETH_P_ALL)
        return True
    except NetlinkError as e:
        if e.code in (errno.ENOENT, errno.ENODEV, errno.EINVAL):
            return False
        raise
