"""Well-formedness of captured IPv4 packets (checksums verified over the bytes on the wire)."""
from __future__ import annotations

import socket

from scapy.utils import checksum


def ip_bytes(frame) -> bytes | None:
    """The IPv4 packet of a captured Ethernet frame (raw bytes, VLAN tags skipped), or None."""
    b = bytes(frame)
    off, etype = 12, int.from_bytes(b[12:14], "big")
    while etype == 0x8100 and len(b) >= off + 6:
        off += 4
        etype = int.from_bytes(b[off : off + 2], "big")
    return b[off + 2 :] if etype == 0x0800 else None


def problems(ip: bytes) -> list[str]:
    """Why this IPv4 packet is not well formed ([] when it is): header fields, header checksum,
    L4 length and checksum (a UDP checksum of 0 means none)."""
    if len(ip) < 20:
        return ["shorter than an IPv4 header"]
    out = []
    if ip[0] >> 4 != 4:
        out.append("version")
    ihl = (ip[0] & 15) * 4
    if ihl < 20 or ihl > len(ip):
        return out + ["ihl"]
    total = int.from_bytes(ip[2:4], "big")
    if total < ihl or total > len(ip):
        return out + ["total length"]
    if checksum(ip[:ihl]) != 0:
        out.append("ip checksum")
    frag = int.from_bytes(ip[6:8], "big")
    if frag & 0x3FFF:  # MF or an offset: no L4 check
        return out
    l4, proto = ip[ihl:total], ip[9]
    pseudo = ip[12:20] + bytes([0, proto]) + len(l4).to_bytes(2, "big")
    if proto == 17:
        if len(l4) < 8:
            return out + ["udp truncated"]
        if int.from_bytes(l4[4:6], "big") != len(l4):
            out.append("udp length")
        if l4[6:8] != b"\0\0" and checksum(pseudo + l4) != 0:
            out.append("udp checksum")
    elif proto == 6:
        if len(l4) < 20:
            return out + ["tcp truncated"]
        if checksum(pseudo + l4) != 0:
            out.append("tcp checksum")
    elif proto == 1:
        if len(l4) < 8:
            return out + ["icmp truncated"]
        if checksum(l4) != 0:
            out.append("icmp checksum")
    return out


def src(ip: bytes) -> str:
    return socket.inet_ntoa(ip[12:16])


def dst(ip: bytes) -> str:
    return socket.inet_ntoa(ip[16:20])
