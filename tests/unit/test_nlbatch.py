"""The batched requests of `up` (datapath/nlbatch.py, datapath/tc.py attach_messages) are byte for
byte what pyroute2's high-level calls they replace would send, but for sequence number and
port id. Nothing reaches the kernel: the socket's send is replaced by a capture that aborts
the call."""
import pytest
from pyroute2 import IPRoute

from fastnet.datapath import nlbatch
from fastnet.control.links import RTPROT_FASTNET
from fastnet.datapath import tc

IFINDEX = 0x7FF0  # no kernel sees it
PROG_FD = 42


class Captured(Exception):
    pass


@pytest.fixture
def sent():
    """(ipr, capture): every datagram pyroute2 tries to send lands in capture, unsent."""
    ipr = IPRoute()
    captured: list[bytes] = []

    def capture(data):
        captured.append(bytes(data))
        raise Captured

    ipr.asyncore.send = capture
    try:
        yield ipr, captured
    finally:
        ipr.close()


def without_seq_and_pid(data: bytes) -> bytes:
    return data[:8] + data[16:]  # nlmsghdr: len, type, flags | seq, pid | payload


def encoded(msg) -> bytes:
    msg["header"]["sequence_number"] = 0
    msg["header"]["pid"] = 0
    msg.encode()
    return without_seq_and_pid(msg.data)


CASES = {
    "container address": (
        lambda ipr: ipr.addr("add", index=IFINDEX, address="10.6.0.2", prefixlen=24),
        lambda: nlbatch.addr_add(IFINDEX, "10.6.0.2", 24),
    ),
    "link up": (
        lambda ipr: ipr.link("set", index=IFINDEX, state="up"),
        lambda: nlbatch.link_up(IFINDEX),
    ),
    "default route": (
        lambda ipr: ipr.route("replace", dst="0.0.0.0/0", gateway="10.6.0.1", oif=IFINDEX),
        lambda: nlbatch.route_replace("0.0.0.0", 0, IFINDEX, gateway="10.6.0.1"),
    ),
    "gateway address": (
        lambda ipr: ipr.addr("add", index=IFINDEX, address="10.7.0.1", prefixlen=32),
        lambda: nlbatch.addr_add(IFINDEX, "10.7.0.1", 32),
    ),
    "container route": (
        lambda ipr: ipr.route("replace", dst="10.7.0.5/32", oif=IFINDEX, scope=253, prefsrc="10.7.0.1",
                              proto=RTPROT_FASTNET),
        lambda: nlbatch.route_replace("10.7.0.5", 32, IFINDEX, scope=253, prefsrc="10.7.0.1", proto=RTPROT_FASTNET),
    ),
    "neighbour": (
        lambda ipr: ipr.neigh("replace", dst="10.7.0.5", lladdr="02:fa:0a:07:00:05", ifindex=IFINDEX, state=0x80),
        lambda: nlbatch.neigh_replace(IFINDEX, "10.7.0.5", "02:fa:0a:07:00:05", 0x80),
    ),
    "clsact": (
        lambda ipr: ipr.tc("add", "clsact", IFINDEX),
        lambda: tc.attach_messages(IFINDEX, PROG_FD, "fn_from_container")[0],
    ),
    "ingress program": (
        lambda ipr: ipr.tc("replace-filter", "bpf", IFINDEX, handle=tc.HANDLE, fd=PROG_FD, name="fn_from_container",
                           parent=tc.INGRESS, prio=tc.PRIO, protocol=tc.ETH_P_ALL, classid=1, direct_action=True),
        lambda: tc.attach_messages(IFINDEX, PROG_FD, "fn_from_container")[1],
    ),
    "egress program": (
        lambda ipr: ipr.tc("replace-filter", "bpf", IFINDEX, handle=tc.HANDLE, fd=PROG_FD, name="fn_x",
                           parent=tc.EGRESS, prio=tc.PRIO, protocol=tc.ETH_P_ALL, classid=1, direct_action=True),
        lambda: tc.attach_messages(IFINDEX, PROG_FD, "fn_x", parent=tc.EGRESS)[1],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_batched_request_is_what_pyroute2_sends(sent, case):
    ipr, captured = sent
    call, build = CASES[case]
    with pytest.raises(Captured):
        call(ipr)
    assert len(captured) == 1
    assert encoded(build()) == without_seq_and_pid(captured[0])


def test_a_differing_field_is_seen(sent):
    """The comparison can fail: another prefix length is another message."""
    ipr, captured = sent
    with pytest.raises(Captured):
        ipr.addr("add", index=IFINDEX, address="10.6.0.2", prefixlen=24)
    assert encoded(nlbatch.addr_add(IFINDEX, "10.6.0.2", 16)) != without_seq_and_pid(captured[0])


def test_a_failing_request_of_a_batch_raises():
    """The kernel's error for a request of the batch comes back as the call's NetlinkError
    (ENODEV here, EPERM without root: either way nothing is changed)."""
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr, pytest.raises(NetlinkError):
        nlbatch.send(ipr, [nlbatch.link_up(IFINDEX), nlbatch.addr_add(IFINDEX, "10.6.0.2", 24)])
