"""Connection tracking under pressure: budgets, TCP confirmation, flows removed whole.

The topology of test_nat.py (drawn there); its helpers build the frames. What this file adds:

                       flows from outside ("in")     the containers' own ("out": SNAT, hairpin)
     new (unconfirmed)   in_new_max                    out_new_max
     confirmed           in_max                        out_max
     one owner's share   port_(new_)max: one           container_(new_)max: one container
                         published (protocol, port)

     fn_from_uplink --new flow to a published port--> counted in "in" against its port
     fn_from_container --new flow to the outside-----> counted in "out" against the container
     the first reply (UDP, ICMP) / the client's ACK of the SYN-ACK (TCP) moves a flow from new
     to confirmed; a flow over any budget is refused and counted (drop_ct_new_full when it
     starts, drop_ct_full when it would be confirmed); nothing is ever evicted.

CASES are data like test_nat.CASES (the budgets are the host record's); the tests after them
follow flows: the handshake that confirms, a flood from outside, garbage collection and flush
releasing both entries and the budget, a full table; then TCP as RFC 5382 and Linux track it:
RSTs in the window only, half-close, flows picked up mid-stream; and the flows carried over to a
new build of the datapath, from the current layout and from that of ABI 2 to 5; and a container's
flows going with its port.
"""
from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from fastnet.datapath import abi
from fastnet.datapath.loader import compile_datapath
from fastnet.datapath.maps import CtBudgets, CtUsage, ct_budgets, ct_record
from fastnet.datapath import ctcarry, testrun

from conftest import NSEC, PROG, UPLINK_PROG, Nat, reset
from test_nat import (CT, DNAT_NEW, ISN, NEIGH, SNAT_NEW, SHORT, Case, Send, a_hairpin, a_syn, a_udp, b_dns_answer,
                      client_dns, client_syn, d_hairpin_synack, d_synack, delta, drop, inbound, into, out, params, peer,
                      run, server_synack, server_udp, tcp, to_uplink, udp)
from topology import A, B, C, CLIENT, D, HOST, NAT_NETWORKS, NAT_PORTS, SERVER, SERVICES, UPLINK_IP, host

ROOMY = CtBudgets(in_max=64, in_new_max=64, out_max=64, out_new_max=64, port_max=64, port_new_max=64,
                  container_max=64, container_new_max=64)


def budgets(**limits: int) -> CtBudgets:
    """ROOMY with some limits lowered."""
    return replace(ROOMY, **limits)


def client(port: int, dport: int = 7005, flags: str = "S", **kw) -> Send:
    return inbound(tcp(port, dport, flags, **kw), src=CLIENT)


client_ack = client(5555, flags="A")  # completes client_syn's handshake after d_synack
a_udp_2 = out(A, udp(20001, 53))
a_ack = out(A, tcp(20000, 80, "A"))
server_rst = inbound(tcp(80, 20000, "R"))  # seq ISN + 1: the server's next sequence number
blind_rst = inbound(tcp(80, 20000, "R", seq=ISN + 1 + (1 << 31)))
b_udp = out(B, udp(20002, 53))

CASES = [
    # -- new flows: a budget of new flows that is full refuses, and only its own flows --
    drop("inbound_new_flow_over_the_in_budget", client(5556, 7006), "drop_ct_new_full", given=(client_syn,),
         host=host(budgets=budgets(in_new_max=1))),
    drop("inbound_new_flow_over_its_ports_share", client(5556), "drop_ct_new_full", given=(client_syn,),
         host=host(budgets=budgets(port_new_max=1))),
    Case("inbound_new_flow_to_another_port_despite_a_full_share", client(5556, 7006), "redirect", peer(D), DNAT_NEW,
         into(D, client(5556, 7006), dst=D.ipv4, dport=8006), given=(client_syn,),
         host=host(budgets=budgets(port_new_max=1))),
    Case("outbound_new_flow_despite_a_full_in_budget", a_syn, "redirect", NEIGH, SNAT_NEW,
         to_uplink(a_syn, src=UPLINK_IP), given=(client_syn,), host=host(budgets=budgets(in_new_max=1))),
    drop("outbound_new_flow_over_the_out_budget", b_udp, "drop_ct_new_full", given=(a_udp,),
         host=host(budgets=budgets(out_new_max=1))),
    drop("outbound_new_flow_over_its_containers_share", a_udp_2, "drop_ct_new_full", given=(a_udp,),
         host=host(budgets=budgets(container_new_max=1))),
    Case("outbound_new_flow_of_another_container_despite_a_full_share", b_udp, "redirect", NEIGH, SNAT_NEW,
         to_uplink(b_udp, src=UPLINK_IP), given=(a_udp,), host=host(budgets=budgets(container_new_max=1))),
    Case("inbound_new_flow_despite_a_full_out_budget", client_syn, "redirect", peer(D), DNAT_NEW,
         into(D, client_syn, dst=D.ipv4, dport=8005), given=(a_udp,), host=host(budgets=budgets(out_new_max=1))),
    # -- confirmation: a full budget of confirmed flows refuses the packet that would confirm --
    drop("reply_over_the_out_budget", inbound(udp(53, 20002)), "drop_ct_full", given=(a_udp, server_udp, b_udp),
         host=host(budgets=budgets(out_max=1))),
    drop("reply_over_its_containers_share", inbound(udp(53, 20001)), "drop_ct_full",
         given=(a_udp, server_udp, a_udp_2), host=host(budgets=budgets(container_max=1))),
    Case("reply_of_another_container_despite_a_full_share", inbound(udp(53, 20002)), "redirect", peer(B), CT,
         into(B, inbound(udp(53, 20002)), dst=B.ipv4), given=(a_udp, server_udp, b_udp),
         host=host(budgets=budgets(container_max=1))),
    drop("answer_of_a_published_port_over_the_in_budget", out(B, udp(53, 5556), dst=CLIENT), "drop_ct_full",
         given=(client_dns, b_dns_answer, inbound(udp(5556, 5353), src=CLIENT)),
         host=host(budgets=budgets(in_max=1))),
    drop("tcp_ack_of_the_syn_ack_over_the_in_budget", client(5556, flags="A"), "drop_ct_full",
         given=(client_syn, d_synack, client_ack, client(5556), out(D, tcp(8005, 5556, "SA"), dst=CLIENT)),
         host=host(budgets=budgets(in_max=1))),
    Case("reply_despite_a_full_in_budget", server_udp, "redirect", peer(A), CT, into(A, server_udp, dst=A.ipv4),
         given=(client_dns, b_dns_answer, a_udp), host=host(budgets=budgets(in_max=1))),
    # -- TCP: an RST outside the sender's window is delivered (the endpoint judges) and changes nothing --
    Case("tcp_rst_outside_the_window", blind_rst, "redirect", peer(A), ("fwd_ct", "fwd_ct_rst_ignored"),
         into(A, blind_rst, dst=A.ipv4), given=(a_syn, server_synack, a_ack)),
    Case("tcp_rst_in_the_window", server_rst, "redirect", peer(A), CT, into(A, server_rst, dst=A.ipv4),
         given=(a_syn, server_synack, a_ack)),
]


@pytest.mark.parametrize("case", params(CASES))
def test_conntrack(nat, case: Case):
    nat.configure(case.host, case.services)
    for earlier in case.given:
        assert run(nat, earlier).verdict == "redirect", "a packet this case builds on was not translated"
    frame = bytes(case.send.frame)
    expected_output = frame if isinstance(case.output, str) else bytes(case.output)
    before = nat.counters()

    result = run(nat, case.send)

    assert (result.verdict, result.redirects) == (case.verdict, case.redirects)
    assert result.output.hex() == expected_output.hex()
    assert delta(before, nat.counters()) == {(case.send.prog, c): (1, len(frame)) for c in case.counters}
    assert usage(nat) == usage_of_the_table(nat), "the budgets do not count what the table holds"


def test_case_ids_are_unique():
    import test_nat

    ids = [c.id for c in CASES + test_nat.CASES]
    assert len(ids) == len(set(ids))


def test_a_refused_flow_leaves_nothing_behind(nat):
    """The flow whose confirmation a full budget refuses is removed, with what it held."""
    nat.configure(host(budgets=budgets(out_max=1)))
    for send in (a_udp, server_udp, b_udp):
        run(nat, send)
    assert run(nat, inbound(udp(53, 20002))).verdict == "shot"
    assert {r.orig[:2] for r in nat.conntrack()} == {(A.ipv4, 20000), (SERVER, 53)}
    assert usage(nat) == {"in": CtUsage(0, 0), "out": CtUsage(1, 0)}


# ---- what the budgets hold ---------------------------------------------------------------------


def usage(nat: Nat) -> dict[str, CtUsage]:
    return nat.maps.conntrack_usage()


def usage_of_the_table(nat: Nat) -> dict[str, CtUsage]:
    """What fn_ct_budget's totals must say: the flows (forward entries) in the table."""
    counts = {"in": [0, 0], "out": [0, 0]}
    for r in nat.conntrack():
        if not r.reply:
            counts["in" if r.inbound else "out"][0 if r.confirmed else 1] += 1
    return {k: CtUsage(*v) for k, v in counts.items()}


# ---- TCP: confirmed by the ACK of the SYN-ACK only ---------------------------------------------

HANDSHAKES = {  # the client's SYN, the server's SYN-ACK, the client's ACK; the flow's kind
    "snat": (a_syn, server_synack, out(A, tcp(20000, 80, "A"))),
    "dnat": (client_syn, d_synack, client_ack),
}
WRONG = ISN + 77_777


@pytest.mark.parametrize("kind", HANDSHAKES)
@pytest.mark.parametrize(("scenario", "confirmed"), [
    ("handshake", True),
    ("blind_ack", False),  # no SYN-ACK went through: nothing tells what the ACK must acknowledge
    ("ack_of_another_syn_ack", False),
    ("syn_ack_of_another_syn", False),
    ("rst_instead_of_ack", False),
])
def test_tcp_is_confirmed_only_by_the_ack_of_the_syn_ack(nat, kind, scenario, confirmed):
    syn, synack, ack = HANDSHAKES[kind]
    if scenario == "ack_of_another_syn_ack":
        ack = Send(ack.frame.copy(), ack.port)
        ack.frame["TCP"].ack = WRONG
    if scenario == "syn_ack_of_another_syn":
        synack = Send(synack.frame.copy(), synack.port)
        synack.frame["TCP"].ack = WRONG
    if scenario == "rst_instead_of_ack":
        ack = Send(ack.frame.copy(), ack.port)
        ack.frame["TCP"].flags = "RA"
    sends = (syn, ack) if scenario == "blind_ack" else (syn, synack, ack)
    for send in sends:
        assert run(nat, send).verdict == "redirect"  # translated all the same: the endpoints judge
    records = nat.conntrack()
    assert len(records) == 2 and {r.confirmed for r in records} == {confirmed}, records
    expect = {"in": CtUsage(0, 0), "out": CtUsage(0, 0)}
    expect["in" if kind == "dnat" else "out"] = CtUsage(1, 0) if confirmed else CtUsage(0, 1)
    assert usage(nat) == expect


def test_a_retransmitted_syn_ack_still_confirms(nat):
    for send in (client_syn, d_synack, d_synack, client_ack):
        run(nat, send)
    assert {r.confirmed for r in nat.conntrack()} == {True}


# ---- a flood from outside --------------------------------------------------------------------------

FLOOD_BUDGETS = CtBudgets(in_max=8, in_new_max=24, out_max=48, out_new_max=16, port_max=8, port_new_max=8,
                          container_max=24, container_new_max=8)
SPOOFED = IPv4Address("100.64.0.0")


def spoofed(i: int) -> list[Send]:
    """Three new flows from a random-looking outside source: a SYN and a blind ACK to the published
    TCP port, and a datagram to the published UDP port that B answers."""
    src = SPOOFED + i
    return [inbound(tcp(1024 + i % 60000, 7005), src=src),
            inbound(tcp(1024 + i % 60000, 7006, "A", seq=i * 7919, ack=i * 104729), src=src),
            inbound(udp(1024 + i % 60000, 5353), src=src)]


def test_a_flood_from_outside_leaves_established_and_new_outbound_flows(nat):
    """Spoofed traffic at 10x what the in budgets hold (SYNs, blind ACKs, datagrams a container
    answers) never displaces the containers' established flows, nor keeps them from opening new
    ones; beyond its budgets it is refused, and counted."""
    nat.configure(host(budgets=FLOOD_BUDGETS))
    established = []
    for i, port in enumerate((A, B, C, A, B, C) * 4):  # 24 flows, TCP and UDP
        sport = 21000 + i
        if i % 2:
            steps = (out(port, udp(sport, 53)), inbound(udp(53, sport)))
        else:
            steps = (out(port, tcp(sport, 80)), inbound(tcp(80, sport, "SA")), out(port, tcp(sport, 80, "A")))
        for send in steps:
            assert run(nat, send).verdict == "redirect"
        established.append((port, steps[0], steps[1]))
    assert usage(nat) == {"in": CtUsage(0, 0), "out": CtUsage(24, 0)}

    capacity = FLOOD_BUDGETS.in_max + FLOOD_BUDGETS.in_new_max
    before = nat.counters()
    for i in range(10 * capacity // 3 + 1):
        syn, blind_ack, datagram = spoofed(i)
        run(nat, syn)
        run(nat, blind_ack)
        if run(nat, datagram).redirects == peer(B):
            run(nat, out(B, udp(53, datagram.frame["UDP"].sport), dst=IPv4Address(datagram.frame["IP"].src)))
    moved = delta(before, nat.counters())
    assert moved[(UPLINK_PROG, "drop_ct_new_full")][0] > 0 and moved[(PROG, "drop_ct_full")][0] > 0, moved
    held = usage(nat)
    assert held["in"].flows <= FLOOD_BUDGETS.in_max and held["in"].new_flows <= FLOOD_BUDGETS.in_new_max, held
    assert held["out"] == CtUsage(24, 0) and held == usage_of_the_table(nat)

    # every established flow is still there and translates both ways, as a tracked flow
    for port, first, reply in established:
        assert run(nat, first).output.hex() == bytes(to_uplink(first, src=UPLINK_IP)).hex()
        sport = first.frame["IP"].payload.sport
        assert run(nat, reply).output.hex() == bytes(into(port, reply, dst=port.ipv4)).hex(), sport
    # and the containers still open new flows
    for i, port in enumerate((A, B, C)):
        for send in (out(port, tcp(22000 + i, 80)), inbound(tcp(80, 22000 + i, "SA")), out(port, tcp(22000 + i, 80, "A"))):
            assert run(nat, send).verdict == "redirect"
    assert usage(nat)["out"] == CtUsage(27, 0)


def test_one_published_port_cannot_starve_the_others(nat):
    nat.configure(host(budgets=budgets(in_new_max=8, port_new_max=4)))
    results = [run(nat, client(6000 + i)).verdict for i in range(8)]
    assert results == ["redirect"] * 4 + ["shot"] * 4
    assert run(nat, client(6100, 7006)).redirects == peer(D)
    assert run(nat, inbound(udp(6000, 5353), src=CLIENT)).redirects == peer(B)


def test_one_container_cannot_starve_the_others(nat):
    nat.configure(host(budgets=budgets(out_new_max=8, container_new_max=4)))
    results = [run(nat, out(A, udp(43000 + i, 53))).verdict for i in range(8)]
    assert results == ["redirect"] * 4 + ["shot"] * 4
    assert run(nat, out(B, udp(43000, 53))).redirects == NEIGH


# ---- removal: both entries, and the budget --------------------------------------------------------


def test_garbage_collection_removes_whole_flows_and_releases_their_budget(nat):
    nat.configure(host(**SHORT))
    for send in (a_udp, server_udp, client_syn, a_udp_2):
        run(nat, send)
    assert usage(nat) == {"in": CtUsage(0, 1), "out": CtUsage(1, 1)}
    nat.advance(SHORT["udp"] + 1)
    assert nat.expire() == 4  # the UDP flows; client_syn's SYN timeout (11 s) has not passed
    assert usage(nat) == {"in": CtUsage(0, 1), "out": CtUsage(0, 0)} == usage_of_the_table(nat)
    nat.advance(SHORT["tcp_syn"])
    assert nat.expire() == 2
    assert nat.conntrack() == [] and usage(nat) == {"in": CtUsage(0, 0), "out": CtUsage(0, 0)}


def test_a_flow_lives_while_either_direction_does(nat):
    """The collector removes a flow only when both its entries expired: one direction's deadline
    alone (the packets it sent last) never takes the flow apart."""
    nat.configure(host(**SHORT))
    run(nat, a_udp)
    run(nat, server_udp)
    fwd_key = next(k for k, e in nat.maps._items("fn_ct") if not e.flags & abi.constants()["FN_CT_F_REPLY"])
    entry = dict((bytes(k), e) for k, e in nat.maps._items("fn_ct"))[bytes(fwd_key)]
    entry.expires = nat.now - 1  # as if only this direction had gone quiet
    from fastnet.datapath import libbpf

    libbpf.map_update(nat.maps.dp.maps["fn_ct"], fwd_key, entry)
    nat.advance(1)
    assert nat.expire() == 0 and len(nat.conntrack()) == 2


def test_the_kernel_rechecks_the_deadline_before_removing(nat):
    """The collector's list is read before it acts: a flow refreshed in between survives."""
    nat.configure(host(**SHORT))
    run(nat, a_udp)
    key = nat.maps._flow_keys(nat.maps._items("fn_ct"))
    removed = nat.maps._ct_admin(abi.constants()["FN_CT_ADMIN_EXPIRE"], key, abi.constants()["FN_CT_ADMIN_KEYS"],
                                 nat.now)
    assert removed == 0 and len(nat.conntrack()) == 2


def test_remove_and_flush_take_both_entries_and_release_the_budget(nat):
    for send in (a_udp, server_udp, client_syn, a_syn, server_synack):
        run(nat, send)
    assert nat.maps.conntrack_remove([key_of(nat, (SERVER, 53, UPLINK_IP, 20000))]) == 2  # a_udp's reply entry
    assert usage(nat) == {"in": CtUsage(0, 1), "out": CtUsage(0, 1)} == usage_of_the_table(nat)
    assert nat.maps.conntrack_flush() == 4
    assert nat.conntrack() == [] and usage(nat) == {"in": CtUsage(0, 0), "out": CtUsage(0, 0)}
    assert nat.maps.conntrack_flush() == 0


def key_of(nat: Nat, orig: tuple) -> abi.CtKey:
    """The fn_ct key of the entry whose packets arrive as orig (saddr, sport, daddr, dport)."""
    (found,) = [k for k, e in nat.maps._items("fn_ct") if ct_record(k, e).orig == orig]
    return found


# ---- a full table refuses, it never evicts ---------------------------------------------------------

TABLE = 8  # fn_ct entries of the small build: four flows


@pytest.fixture(scope="module")
def small_table_datapath():
    tdp = testrun.TestDatapath.__new__(testrun.TestDatapath)
    tdp.bpf, tdp.dp = compile_datapath(test_mode=True, defines=(("FN_CT_MAX", TABLE),))
    yield tdp
    tdp.close()


def test_a_full_table_refuses_new_flows_and_keeps_the_old(small_table_datapath):
    """Budgets larger than the table (a configuration the control plane never writes): the
    table itself refuses, it does not evict (fn_ct is a HASH, not an LRU)."""
    nat = Nat(small_table_datapath, reset(small_table_datapath, NAT_NETWORKS, NAT_PORTS, HOST, SERVICES))
    for send in (a_syn, server_synack, out(A, tcp(20000, 80, "A"))):
        run(nat, send)
    verdicts = [run(nat, client(7000 + i)).verdict for i in range(6)]
    assert verdicts == ["redirect"] * 3 + ["shot"] * 3
    assert delta({}, nat.counters())[(UPLINK_PROG, "drop_ct_insert")] == (3, 3 * len(client(7000).frame))
    assert usage(nat) == usage_of_the_table(nat) == {"in": CtUsage(0, 3), "out": CtUsage(1, 0)}
    data = inbound(tcp(80, 20000, "PA"))
    assert run(nat, data).output.hex() == bytes(into(A, data, dst=A.ipv4)).hex()


def test_default_budgets_fit_the_default_table():
    assert 2 * ct_budgets().flows + abi.constants()["FN_CT_SLACK"] == abi.constants()["FN_CT_MAX"]
    assert ct_budgets(2048, 512, 25, 50) == CtBudgets(512, 128, 1536, 384, 256, 64, 768, 192)


# ---- TCP tracking: RST in the window, half-close, pick-up --------------------------------------------

def states(nat: Nat) -> set[tuple[str, int]]:
    """{(state, expires_ns)} of the entries in conntrack (one flow: both entries agree)."""
    return {(r.state, r.expires_ns) for r in nat.conntrack()}


def established_snat(nat: Nat) -> None:
    nat.configure(host(**SHORT))
    for send in (a_syn, server_synack, a_ack):
        assert run(nat, send).verdict == "redirect"


RST_WINDOW = 1 << 20


@pytest.mark.parametrize(("rst", "closes"), [
    pytest.param(server_rst, True, id="server_next_seq"),
    pytest.param(inbound(tcp(80, 20000, "R", seq=ISN + 1 + RST_WINDOW)), True, id="server_window_edge"),
    pytest.param(inbound(tcp(80, 20000, "R", seq=ISN + 1 + RST_WINDOW + (1 << 16) + 1)), False, id="server_beyond"),
    pytest.param(inbound(tcp(80, 20000, "R", seq=(ISN - RST_WINDOW - 1) % (1 << 32))), False, id="server_behind"),
    pytest.param(blind_rst, False, id="server_opposite_seq_space"),
    pytest.param(out(A, tcp(20000, 80, "R")), True, id="container_next_seq"),
    pytest.param(out(A, tcp(20000, 80, "R", seq=ISN + (1 << 30))), False, id="container_far_off"),
])
def test_an_rst_closes_a_flow_only_in_the_window(nat, rst: Send, closes: bool):
    established_snat(nat)
    established = states(nat)
    t1 = nat.advance(1)
    result = run(nat, rst)
    assert (result.verdict, result.redirects) == ("redirect", NEIGH if rst.port else peer(A))
    assert states(nat) == ({("closed", t1 + SHORT["tcp_closing"] * NSEC)} if closes else established)


def test_the_window_follows_the_data(nat):
    """The tracked sequence number moves with the sender's data (written once per 64 KiB)."""
    established_snat(nat)
    seq = ISN + 1
    for _ in range(40):  # 40 x 60 KiB: far beyond the first window
        seq += 60 * 1024
        run(nat, inbound(tcp(80, 20000, "PA", seq=seq)))
    assert run(nat, inbound(tcp(80, 20000, "R", seq=ISN + 1))).redirects == peer(A)
    assert {s for s, _ in states(nat)} == {"established"}, "an RST from where the stream began closed it"
    run(nat, inbound(tcp(80, 20000, "R", seq=seq + 100)))
    assert {s for s, _ in states(nat)} == {"closed"}


@pytest.mark.parametrize(("ack", "closes"), [(ISN + 1, True), (ISN + 5, False), (None, False)],
                         ids=["acks_the_syn", "acks_something_else", "no_ack"])
def test_an_rst_refusing_a_syn_must_acknowledge_it(nat, ack, closes):
    nat.configure(host(**SHORT))
    run(nat, a_syn)
    rst = inbound(tcp(80, 20000, "RA" if ack else "R", seq=0, ack=ack or 0))
    run(nat, rst)
    assert {s for s, _ in states(nat)} == {"closed" if closes else "new"}


def test_a_half_closed_flow_lives_while_either_direction_sends(nat):
    """shutdown(SHUT_WR) on one side: the flow is half-closed with the half-closed timeout
    (RFC 5382's 4 minutes by default, here 7 s), which traffic either way refreshes; silence
    longer than the closing timeout does not end it. The other side's FIN closes it."""
    established_snat(nat)
    t1 = nat.advance(1)
    run(nat, out(A, tcp(20000, 80, "FA")))
    assert states(nat) == {("half-closed", t1 + 7 * NSEC)}
    nat.advance(SHORT["tcp_closing"] + 1)  # the peer is silent longer than the closing timeout
    assert nat.expire() == 0
    for _ in range(3):  # the server goes on sending; the container only acknowledges
        t = nat.advance(5)
        data, ack = inbound(tcp(80, 20000, "PA")), out(A, tcp(20000, 80, "A", seq=ISN + 2))
        assert run(nat, data).output.hex() == bytes(into(A, data, dst=A.ipv4)).hex()
        assert run(nat, ack).output.hex() == bytes(to_uplink(ack, src=UPLINK_IP)).hex()
        assert nat.expire() == 0 and states(nat) == {("half-closed", t + 7 * NSEC)}
    t2 = nat.advance(1)
    run(nat, inbound(tcp(80, 20000, "FA")))
    assert states(nat) == {("closing", t2 + SHORT["tcp_closing"] * NSEC)}
    nat.advance(SHORT["tcp_closing"] + 0.5)
    assert nat.expire() == 2


def test_a_half_closed_flow_expires_after_its_timeout(nat):
    established_snat(nat)
    run(nat, inbound(tcp(80, 20000, "FA")))
    nat.advance(SHORT["tcp_half_closed"])
    assert nat.expire() == 0
    nat.advance(0.5)
    assert nat.expire() == 2


PICKUPS = {  # the packet that finds no flow; the other direction's answer; kind
    "snat": (out(A, tcp(20000, 80, "PA")), inbound(tcp(80, 20000, "A")), "out"),
}


@pytest.mark.parametrize("kind", PICKUPS)
def test_a_flow_picked_up_mid_stream_is_confirmed_once_both_directions_are_seen(nat, kind):
    """After a flush (or a datapath that lost conntrack), a connection's next packets make a new
    flow with the same translation: it is confirmed, with the established timeout, once the
    other direction answers — not left to die with the SYN timeout. Only a container's own
    connections are picked up: a new flow to a published port starts only at a SYN
    (test_a_segment_other_than_a_syn_to_a_published_port_starts_nothing)."""
    nat.configure(host(**SHORT))
    first, answer, budget = PICKUPS[kind]
    run(nat, first)
    assert {(r.confirmed, r.state) for r in nat.conntrack()} == {(False, "new")}
    t = nat.advance(1)
    assert run(nat, answer).verdict == "redirect"
    assert states(nat) == {("established", t + SHORT["tcp_established"] * NSEC)}
    assert usage(nat)[budget] == CtUsage(1, 0)


@pytest.mark.parametrize("segment", [
    pytest.param(client(5555, flags="PA"), id="from_outside"),
    pytest.param(client(5555, flags="A", seq=123456, ack=654321), id="blind_ack_from_outside"),
    pytest.param(out(A, tcp(20000, 7005, "PA"), dst=UPLINK_IP), id="hairpin_from_a_container"),
])
def test_a_segment_other_than_a_syn_to_a_published_port_starts_nothing(nat, segment):
    """A published port's connection is never picked up mid-stream (unlike Linux with
    nf_conntrack_tcp_loose): such a segment is the host's, since it may answer a host process
    whose ephemeral port lies in a published range. So a blind ACK from outside costs no
    conntrack entry at all."""
    nat.configure(host(**SHORT))
    assert run(nat, segment).verdict == "ok"
    assert nat.conntrack() == [] and usage(nat) == {"in": CtUsage(0, 0), "out": CtUsage(0, 0)}


# ---- carried over to a new build (datapath/ctcarry.py) --------------------------------------------


def carry_over(nat: Nat, rows: list[tuple]) -> int:
    """What an upgrade does: the old build's entries (rows, current layout) go into the new
    build's empty table (here: the same table, flushed) through fn_ct_admin's ADOPT."""
    nat.maps.conntrack_flush()
    return nat.maps.conntrack_adopt(ctcarry.flows(rows))


def table(nat: Nat) -> dict[bytes, tuple]:
    return {bytes(k): (bytes(e)) for k, e in nat.maps._items("fn_ct")}


def test_flows_carried_to_a_new_build_keep_everything(nat):
    for send in (a_syn, server_synack, a_ack, client_dns, b_dns_answer, a_udp_2, client_syn):
        run(nat, send)
    before, held = table(nat), usage(nat)
    assert carry_over(nat, nat.maps._items("fn_ct")) == 4
    assert table(nat) == before and usage(nat) == held == {"in": CtUsage(1, 1), "out": CtUsage(1, 1)}
    # the server speaks first: its packets need the carried reply entries
    for send, port in ((inbound(tcp(80, 20000, "PA")), A), (inbound(udp(53, 20001)), A)):
        assert run(nat, send).output.hex() == bytes(into(port, send, dst=port.ipv4)).hex()


def test_carrying_over_stays_within_the_new_budgets(nat):
    for i in range(6):
        run(nat, out(A, udp(24000 + i, 53)))
        run(nat, inbound(udp(53, 24000 + i)))
    rows = nat.maps._items("fn_ct")
    nat.configure(host(budgets=budgets(container_max=4)))
    assert carry_over(nat, rows) == 4
    assert usage(nat) == {"in": CtUsage(0, 0), "out": CtUsage(4, 0)} == usage_of_the_table(nat)


def v2_rows(nat: Nat) -> tuple[list[tuple], list[tuple]]:
    """The table as a build of ABI 2 to 5 held it: confirmed flows in fn_ct, the others in
    fn_ct_new, 48-byte entries whose flag 0x20 meant "the server answered the SYN"."""
    confirmed, unconfirmed = [], []
    for k, e in nat.maps._items("fn_ct"):
        old = ctcarry.CtEntryV2(expires=e.expires, created=e.created, to_saddr=e.to_saddr, to_daddr=e.to_daddr,
                                to_sport=e.to_sport, to_dport=e.to_dport, out_ifindex=e.out_ifindex, state=e.state,
                                flags=(e.flags & ctcarry.V2_FLAGS) | 0x20)
        old.out_dmac[:], old.out_smac[:] = e.out_dmac[:], e.out_smac[:]
        (confirmed if e.status & 1 else unconfirmed).append((abi.CtKey.from_buffer_copy(bytes(k)), old))
    return confirmed, unconfirmed


def test_flows_of_the_abi_5_layout_are_converted(nat):
    """The layout of ABI 2 to 5 (two LRU tables) is read and converted: the same translations,
    confirmed or not as they were, counted in the budgets the flags say (a DNAT flow from
    outside in "in"); what each TCP direction sent is learnt again."""
    for send in (a_syn, server_synack, a_ack, client_dns, b_dns_answer, client_syn, d_synack):
        run(nat, send)
    old = {bytes(k): ct_record(k, e) for k, e in nat.maps._items("fn_ct")}
    confirmed, unconfirmed = v2_rows(nat)
    assert (len(confirmed), len(unconfirmed)) == (4, 2)
    nat.maps.conntrack_flush()
    assert nat.maps.conntrack_adopt(ctcarry.flows(ctcarry.from_v2(confirmed, unconfirmed))) == 3
    new = {bytes(k): ct_record(k, e) for k, e in nat.maps._items("fn_ct")}
    assert new == old
    assert usage(nat) == {"in": CtUsage(1, 1), "out": CtUsage(1, 0)}
    # the established flow goes on (an RST from a sender we know nothing of yet is not checked,
    # so data first: it teaches the window)
    data = inbound(tcp(80, 20000, "PA"))
    assert run(nat, data).output.hex() == bytes(into(A, data, dst=A.ipv4)).hex()
    run(nat, inbound(tcp(80, 20000, "R", seq=ISN + (1 << 31))))
    assert {r.state for r in nat.conntrack() if r.kind == "snat"} == {"established"}
    # the handshake that was under way completes: it is confirmed once both directions are seen
    run(nat, client_ack)
    run(nat, out(D, tcp(8005, 5555, "PA"), dst=CLIENT))
    assert {(r.confirmed, r.state) for r in nat.conntrack() if r.orig[1] in (5555, 8005)} == {(True, "established")}


def test_half_a_flow_is_not_carried(nat):
    run(nat, a_udp)
    rows = [(k, e) for k, e in nat.maps._items("fn_ct") if not e.flags & abi.constants()["FN_CT_F_REPLY"]]
    assert ctcarry.flows(rows) == []


# ---- a container's flows go with its port (the container removed or recreated) ---------------------


def test_a_containers_flows_go_with_its_port(nat):
    """D's port goes: every flow that delivers to it (published-port flows from outside and
    from a container, D's own) goes with it; the others stay."""
    for send in (a_udp, server_udp, client_syn, d_synack, a_hairpin, d_hairpin_synack, out(D, udp(8005, 123))):
        run(nat, send)
    ports = [p for p in NAT_PORTS if p != D]
    nat.maps.sync(NAT_NETWORKS, ports)
    assert nat.maps.conntrack_forget_ports(p.ifindex for p in ports) == 6
    assert {r.orig for r in nat.conntrack()} == {(A.ipv4, 20000, SERVER, 53), (SERVER, 53, UPLINK_IP, 20000)}
    assert usage(nat) == usage_of_the_table(nat) == {"in": CtUsage(0, 0), "out": CtUsage(1, 0)}


def test_the_collector_forgets_the_flows_of_ports_that_are_gone(nat):
    for send in (client_dns, b_dns_answer, a_udp):
        run(nat, send)
    nat.maps.sync(NAT_NETWORKS, [p for p in NAT_PORTS if p != B])  # B removed
    assert nat.maps.conntrack_expire(nat.now, forget_gone_ports=True) == 2
    assert {r.kind for r in nat.conntrack()} == {"snat"}


def test_a_backend_recreated_with_the_same_address_gets_the_next_packets(nat):
    """A client's keep-alives (WireGuard, say) to a published UDP port: the backend is
    recreated with the same address on a new interface. The old flow goes with the old
    interface, so the next keep-alive makes a flow to the new one (before, the keep-alives kept
    the old flow alive and went to the old interface for ever)."""
    keepalive = inbound(udp(51820, 5353), src=CLIENT)
    for send in (keepalive, out(B, udp(53, 51820), dst=CLIENT)):
        run(nat, send)
    new_b = replace(B, ifindex=112)
    ports = [new_b if p == B else p for p in NAT_PORTS]
    services = [s._replace(backend_ifindex=112) if s.backend_ifindex == B.ifindex else s for s in SERVICES]
    nat.maps.sync(NAT_NETWORKS, ports)
    nat.maps.conntrack_forget_ports(p.ifindex for p in ports)
    nat.configure(HOST, services)
    result = run(nat, keepalive)
    assert (result.verdict, result.redirects) == ("redirect", peer(new_b))
    assert result.output.hex() == bytes(into(new_b, keepalive, dst=B.ipv4, dport=53)).hex()
    answer = out(new_b, udp(53, 51820), dst=CLIENT)
    assert run(nat, answer).output.hex() == bytes(to_uplink(answer, src=UPLINK_IP, sport=5353)).hex()
