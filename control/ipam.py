"""IPv4 address allocation within one network.

Pure and free of I/O: the caller loads the addresses handed out by earlier
runs, calls :func:`allocate` for each network and stores the result. Keeping
earlier addresses stable matters because a container that keeps its name
should keep its address across ``fastnet up`` runs (peers, DNS caches and
published ports all refer to it).
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from ..datapath.errors import FastnetError

if TYPE_CHECKING:  # spec.py imports this module, and what reads state files must not load the config model
    from .config import Network

__all__ = ["IpamError", "allocate"]


class IpamError(FastnetError):
    """No valid address assignment exists; the message is one line naming network and owner."""


def allocate(
    network: Network,
    requests: list[tuple[str, IPv4Address | None]],
    existing: dict[str, IPv4Address],
    taken: frozenset[IPv4Address] = frozenset(),
) -> dict[str, IPv4Address]:
    """Assign an address to every owner in ``requests``, in the order given.

    ``requests`` holds (owner key, static address or None) for each interface
    that should exist on ``network`` after this run; ``existing`` maps owner
    keys to the addresses an earlier run gave them. Precedence:

    1. static addresses, exactly as requested;
    2. an owner's earlier address, if it is still a usable host address of the
       subnet and no static request claims it;
    3. the lowest free host address (never the network, broadcast or gateway
       address), for the remaining owners in request order.

    Owners missing from ``requests`` are released. ``taken`` are addresses held elsewhere
    (other hosts of an overlay network): never given, and a static request for one is refused.
    """
    subnet = network.subnet
    reserved = {subnet.network_address, subnet.broadcast_address, network.gateway}
    where = f"network {network.name} ({subnet})"

    def usable(address: IPv4Address) -> bool:
        return address in subnet and address not in reserved

    assigned: dict[str, IPv4Address] = {}
    holders: dict[IPv4Address, str] = {}

    def give(owner: str, address: IPv4Address) -> None:
        assigned[owner] = address
        holders[address] = owner

    seen: set[str] = set()
    for owner, _ in requests:
        if owner in seen:
            raise IpamError(f"{where}: {owner} is requested twice")
        seen.add(owner)

    # Config validation already rejects bad static addresses; these checks
    # keep a bad caller from producing a silently broken assignment.
    for owner, address in requests:
        if address is None:
            continue
        if not usable(address):
            raise IpamError(f"{where}: static address {address} of {owner} is not a usable host address")
        if address in holders:
            raise IpamError(f"{where}: {owner} and {holders[address]} both claim {address}")
        if address in taken:
            raise IpamError(f"{where}: static address {address} of {owner} is held by a container of another host")
        give(owner, address)

    dynamic = [owner for owner, address in requests if address is None]
    for owner in dynamic:
        previous = existing.get(owner)
        if previous is not None and usable(previous) and previous not in holders and previous not in taken:
            give(owner, previous)

    free = (address for address in subnet.hosts()
            if address not in reserved and address not in holders and address not in taken)
    for owner in dynamic:
        if owner not in assigned:
            address = next(free, None)
            if address is None:
                raise IpamError(f"{where} is exhausted: no address left for {owner}")
            give(owner, address)

    return {owner: assigned[owner] for owner, _ in requests}

