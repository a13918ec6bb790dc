"""The iptables backend's ruleset renderer (Docker 28.5.2's layout with fastnet's chain names):
pure text from project states and iptables-save output, no root."""
from fastnet.control import state
from fastnet.control.backends import iptables_rules as r
from fastnet.control.config import parse_config
from fastnet.control.spec import build

TEXT = """
name: demo
backend: iptables
networks:
  front: {subnet: 10.90.1.0/24}
  back: {subnet: 10.90.2.0/24}
  vault: {subnet: 10.90.9.0/24, internal: true}
containers:
  web:
    networks:
      front: {ipv4_address: 10.90.1.10}
    publish: ["8080:80", "8053:53/udp", "7000-7002:8000-8002", "127.0.0.1:9443:443", "192.0.2.1:9000:9000"]
  db:
    networks:
      back: {ipv4_address: 10.90.2.20}
      vault: {ipv4_address: 10.90.9.20}
  box:
    networks:
      vault: {ipv4_address: 10.90.9.30}
"""


def demo_state(ports=None) -> state.ProjectState:
    spec = build(parse_config(TEXT), None)
    if ports is None:
        ports = {f"{c.name}/{i.network}": 10 + n for n, (c, i) in
                 enumerate((c, i) for c in spec.containers.values() for i in c.interfaces)}
    return state.ProjectState(spec=spec, ports=ports)


FRONT, BACK, VAULT = (r.bridge_name("demo", n) for n in ("front", "back", "vault"))


def test_bridge_names_look_like_the_other_links_and_differ_per_network():
    assert len({FRONT, BACK, VAULT}) == 3
    for name in (FRONT, BACK, VAULT):
        assert name.startswith("demo-") and len(name) == 12 and len(name) <= 15
    assert r.bridge_name("demo", "front") == FRONT  # deterministic
    assert r.bridge_alias("demo", "front") == "fastnet:demo/front"


def test_chain_rules_of_a_small_config():
    t = r.chain_rules(r.ruleset_of([demo_state()]))
    assert t["raw"][r.PREROUTING] == [
        # direct access to every container address on a non-internal network
        f"-A FASTNET-PREROUTING -d 10.90.2.20/32 ! -i {BACK} -j DROP",
        f"-A FASTNET-PREROUTING -d 10.90.1.10/32 ! -i {FRONT} -j DROP",
        # remote access to a port published on loopback
        "-A FASTNET-PREROUTING -d 127.0.0.1/32 ! -i lo -p tcp -m tcp --dport 9443 -j DROP",
    ]
    assert t["nat"][r.PORTS] == [
        "-A FASTNET -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.90.1.10:80",
        "-A FASTNET -p udp -m udp --dport 8053 -j DNAT --to-destination 10.90.1.10:53",
        "-A FASTNET -p tcp -m tcp --dport 7000:7002 -j DNAT --to-destination 10.90.1.10:8000-8002/7000",
        "-A FASTNET -d 127.0.0.1/32 -p tcp -m tcp --dport 9443 -j DNAT --to-destination 10.90.1.10:443",
        "-A FASTNET -d 192.0.2.1/32 -p tcp -m tcp --dport 9000 -j DNAT --to-destination 10.90.1.10:9000",
    ]
    assert t["nat"][r.POSTROUTING] == [
        f"-A FASTNET-POSTROUTING -o {BACK} -m addrtype --src-type LOCAL -j MASQUERADE",
        f"-A FASTNET-POSTROUTING -s 10.90.2.0/24 ! -o {BACK} -j MASQUERADE",
        f"-A FASTNET-POSTROUTING -o {FRONT} -m addrtype --src-type LOCAL -j MASQUERADE",
        f"-A FASTNET-POSTROUTING -s 10.90.1.0/24 ! -o {FRONT} -j MASQUERADE",
        # hairpin: a container reaching its own published port
        "-A FASTNET-POSTROUTING -s 10.90.1.10/32 -d 10.90.1.10/32 -p tcp -m tcp --dport 80 -j MASQUERADE",
        "-A FASTNET-POSTROUTING -s 10.90.1.10/32 -d 10.90.1.10/32 -p udp -m udp --dport 53 -j MASQUERADE",
        "-A FASTNET-POSTROUTING -s 10.90.1.10/32 -d 10.90.1.10/32 -p tcp -m tcp --dport 8000:8002 -j MASQUERADE",
        "-A FASTNET-POSTROUTING -s 10.90.1.10/32 -d 10.90.1.10/32 -p tcp -m tcp --dport 443 -j MASQUERADE",
        "-A FASTNET-POSTROUTING -s 10.90.1.10/32 -d 10.90.1.10/32 -p tcp -m tcp --dport 9000 -j MASQUERADE",
    ]
    f = t["filter"]
    assert r.USER not in f  # the user's chain is never refilled
    assert f[r.FORWARD] == [
        "-A FASTNET-FORWARD -j FASTNET-CT",
        "-A FASTNET-FORWARD -j FASTNET-ISOLATION-1",
        "-A FASTNET-FORWARD -j FASTNET-BRIDGE",
        f"-A FASTNET-FORWARD -i {BACK} -j ACCEPT",
        f"-A FASTNET-FORWARD -i {FRONT} -j ACCEPT",
        f"-A FASTNET-FORWARD -i {VAULT} -o {VAULT} -j ACCEPT",
    ]
    assert f[r.CT] == [
        f"-A FASTNET-CT -o {BACK} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A FASTNET-CT -o {FRONT} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    assert f[r.ISOLATION_1] == [
        f"-A FASTNET-ISOLATION-1 ! -s 10.90.9.0/24 -o {VAULT} -j DROP",
        f"-A FASTNET-ISOLATION-1 ! -d 10.90.9.0/24 -i {VAULT} -j DROP",
        f"-A FASTNET-ISOLATION-1 -i {BACK} ! -o {BACK} -j FASTNET-ISOLATION-2",
        f"-A FASTNET-ISOLATION-1 -i {FRONT} ! -o {FRONT} -j FASTNET-ISOLATION-2",
    ]
    assert f[r.ISOLATION_2] == [f"-A FASTNET-ISOLATION-2 -o {BACK} -j DROP", f"-A FASTNET-ISOLATION-2 -o {FRONT} -j DROP"]
    assert f[r.BRIDGE] == [f"-A FASTNET-BRIDGE -o {BACK} -j FASTNET", f"-A FASTNET-BRIDGE -o {FRONT} -j FASTNET"]
    assert f[r.PORTS] == [
        f"-A FASTNET -d 10.90.1.10/32 ! -i {FRONT} -o {FRONT} -p tcp -m tcp --dport 80 -j ACCEPT",
        f"-A FASTNET -d 10.90.1.10/32 ! -i {FRONT} -o {FRONT} -p udp -m udp --dport 53 -j ACCEPT",
        f"-A FASTNET -d 10.90.1.10/32 ! -i {FRONT} -o {FRONT} -p tcp -m tcp --dport 8000:8002 -j ACCEPT",
        f"-A FASTNET -d 10.90.1.10/32 ! -i {FRONT} -o {FRONT} -p tcp -m tcp --dport 443 -j ACCEPT",
        f"-A FASTNET -d 10.90.1.10/32 ! -i {FRONT} -o {FRONT} -p tcp -m tcp --dport 9000 -j ACCEPT",
        f"-A FASTNET ! -i {BACK} -o {BACK} -j DROP",
        f"-A FASTNET ! -i {FRONT} -o {FRONT} -j DROP",
    ]


def test_internal_networks_get_no_nat_and_no_direct_access_rule():
    t = r.chain_rules(r.ruleset_of([demo_state()]))
    text = "\n".join(line for table in t.values() for chain in table.values() for line in chain)
    assert "10.90.9.0/24 ! -o" not in text  # no MASQUERADE
    assert "10.90.9.20" not in text and "10.90.9.30" not in text  # no raw drop, no port
    assert f"-o {VAULT} -j FASTNET" not in text  # no jump to the published ports' chain


def test_only_existing_ports_count():
    st = demo_state(ports={"db/back": 3})  # web's port does not exist (yet)
    rs = r.ruleset_of([st])
    assert [e.ip for e in rs.endpoints] == [st.spec.containers["db"].interfaces[0].ipv4]
    assert rs.published == ()
    assert len(rs.bridges) == 3


def test_order_does_not_depend_on_how_the_state_was_loaded():
    st = demo_state()
    again = state.from_json(state.to_json(st))  # the file keeps keys sorted, not in config order
    assert list(again.spec.networks) != list(st.spec.networks)
    assert r.render_sync(r.ruleset_of([again]), {}) == r.render_sync(r.ruleset_of([st]), {})


def test_projects_are_rendered_in_name_order_whoever_syncs():
    a = demo_state()
    b_spec = build(parse_config(TEXT.replace("name: demo", "name: alpha").replace("10.90.", "10.80.")), None)
    b = state.ProjectState(spec=b_spec, ports={"web/front": 99})
    assert r.ruleset_of([a, b]) == r.ruleset_of([b, a])
    assert r.ruleset_of([a, b]).bridges[0].name == r.bridge_name("alpha", "back")


def test_render_sync_on_an_empty_host_declares_chains_and_adds_jumps():
    text = r.render_sync(r.ruleset_of([demo_state()]), {})
    assert text == r.render_sync(r.ruleset_of([demo_state()]), {})  # deterministic
    blocks = [b for b in text.split("COMMIT\n") if b.strip()]
    assert [b.splitlines()[0] for b in blocks] == ["*raw", "*nat", "*filter"]
    raw, nat, filt = blocks
    assert raw.splitlines()[1] == ":FASTNET-PREROUTING - [0:0]"
    assert raw.splitlines()[-1] == "-A PREROUTING -j FASTNET-PREROUTING"
    assert nat.splitlines()[-3:] == [
        "-A PREROUTING -m addrtype --dst-type LOCAL -j FASTNET",
        "-A OUTPUT -m addrtype --dst-type LOCAL -j FASTNET",
        "-I POSTROUTING 1 -j FASTNET-POSTROUTING",
    ]
    assert [line for line in filt.splitlines() if line.startswith(":")] == [
        f":{c} - [0:0]" for c in r.CHAINS["filter"]
    ]
    assert filt.splitlines()[-2:] == ["-I FORWARD 1 -j FASTNET-USER", "-I FORWARD 2 -j FASTNET-FORWARD"]
    assert text.endswith("COMMIT\n")


SAVED = """\
# Generated by iptables-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [10:600]
:OUTPUT ACCEPT [0:0]
:FASTNET - [0:0]
:FASTNET-USER - [0:0]
:FASTNET-FORWARD - [0:0]
:OTHER - [0:0]
[1:60] -A FORWARD -j OTHER
[5:300] -A FORWARD -j FASTNET-USER
[5:300] -A FORWARD -j FASTNET-FORWARD
[0:0] -A FASTNET-USER -s 192.0.2.9/32 -j DROP
[3:180] -A FASTNET ! -i br1 -o br1 -j DROP
[2:120] -A FASTNET -d 10.0.0.2/32 ! -i br1 -o br1 -p tcp -m tcp --dport 80 -j ACCEPT
[4:240] -A FASTNET ! -i br2 -o br2 -j DROP
[7:420] -A FASTNET-FORWARD -j FASTNET
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:FASTNET - [0:0]
[0:0] -A PREROUTING -m addrtype --dst-type LOCAL -j FASTNET
[0:0] -A POSTROUTING -s 10.1.0.0/16 -j MASQUERADE
COMMIT
"""


def test_parse_save_reads_chains_rules_and_counters():
    t = r.parse_save(SAVED)
    assert set(t) == {"filter", "nat"}
    assert t["filter"].chains["FORWARD"] == "DROP" and t["filter"].chains["FASTNET"] == "-"
    fwd = t["filter"].rules_of("FORWARD")
    assert [x.target for x in fwd] == ["OTHER", "FASTNET-USER", "FASTNET-FORWARD"]
    assert (fwd[1].packets, fwd[1].bytes) == (5, 300)
    assert fwd[1].line == "-A FORWARD -j FASTNET-USER"


def test_render_sync_keeps_the_user_chain_and_jumps_that_are_in_place():
    text = r.render_sync(r.Ruleset(), r.parse_save(SAVED))
    filt = text.split("*filter\n")[1]
    assert ":FASTNET-USER" not in filt  # declaring it would flush the user's rules
    assert ":FASTNET - [0:0]" in filt  # fastnet's own chains are flushed and refilled
    assert not [x for x in filt.splitlines() if x.split()[:2] in (["-A", "FORWARD"], ["-I", "FORWARD"], ["-D", "FORWARD"])]
    nat = text.split("*nat\n")[1].split("COMMIT")[0]
    # PREROUTING's jump is in place; OUTPUT's and POSTROUTING's are added
    assert "-D PREROUTING" not in nat and "-A PREROUTING" not in nat
    assert "-A OUTPUT -m addrtype --dst-type LOCAL -j FASTNET" in nat
    assert "-I POSTROUTING 1 -j FASTNET-POSTROUTING" in nat


def test_jumps_in_the_wrong_order_are_put_back_at_the_top():
    saved = SAVED.replace(
        "[5:300] -A FORWARD -j FASTNET-USER\n[5:300] -A FORWARD -j FASTNET-FORWARD\n",
        "[5:300] -A FORWARD -j FASTNET-FORWARD\n[5:300] -A FORWARD -j FASTNET-USER\n",
    )
    filt = r.render_sync(r.Ruleset(), r.parse_save(saved)).split("*filter\n")[1]
    assert filt.splitlines()[-5:] == [
        "-D FORWARD -j FASTNET-FORWARD",
        "-D FORWARD -j FASTNET-USER",
        "-I FORWARD 1 -j FASTNET-USER",
        "-I FORWARD 2 -j FASTNET-FORWARD",
        "COMMIT",
    ]


def test_render_teardown_removes_exactly_fastnets_jumps_and_chains():
    text = r.render_teardown(r.parse_save(SAVED))
    assert text == "\n".join([
        "*nat",
        "-D PREROUTING -m addrtype --dst-type LOCAL -j FASTNET",
        ":FASTNET - [0:0]",
        "-X FASTNET",
        "COMMIT",
        "*filter",
        "-D FORWARD -j FASTNET-USER",
        "-D FORWARD -j FASTNET-FORWARD",
        ":FASTNET-USER - [0:0]",
        ":FASTNET-FORWARD - [0:0]",
        ":FASTNET - [0:0]",
        "-X FASTNET-USER",
        "-X FASTNET-FORWARD",
        "-X FASTNET",
        "COMMIT",
    ]) + "\n"
    assert "OTHER" not in text and "MASQUERADE" not in text  # nothing else is touched


def test_render_teardown_of_a_clean_host_is_empty():
    assert r.render_teardown({}) == ""
    assert r.render_teardown(r.parse_save("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n")) == ""


def test_counters_sum_fastnets_verdicts():
    c = r.counters(r.parse_save(SAVED))
    assert c["filter"] == {"FASTNET-USER:DROP": (0, 0), "FASTNET:ACCEPT": (2, 120), "FASTNET:DROP": (7, 420)}
    assert "nat" in c and c["nat"] == {}
