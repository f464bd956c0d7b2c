"""Which swarm a fresh node asks to join: a pure rule over the peer table.

A node is fresh while its swarm key was generated here and never left it (no member ever
answered with it, no joiner was given it, nobody printed, set or rotated it) and it runs with
pairing on and no configured key. Only a fresh node asks, and it asks one swarm:

- the one established swarm in sight (peers advertising `open`), when there is exactly one;
- with several established swarms in sight it asks none (it cannot know which one its owner
  means; a device could pose as one): paste the key there instead;
- with none, two fresh nodes merge: the one with the larger node id asks the smallest fresh node
  it sees, so any number of fresh nodes started together end in the smallest one's swarm.

A swarm that refused this node is not asked again until it restarts.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from network.membership.records import Peer, PeerState

MAX_ASKED = 8  # members of the chosen swarm one attempt asks at once


@dataclass(frozen=True)
class JoinTarget:
    """The swarm to ask (its key's fingerprint) and the members to send the request to."""

    swarm: str
    members: tuple[Peer, ...]


def choose_target(peers: Iterable[Peer], self_id: str, protocol: int, *,
                  refused: frozenset[str] = frozenset()) -> tuple[JoinTarget | None, str]:
    """The swarm a fresh node `self_id` asks, or None, with the reason (for the views)."""
    open_swarms: dict[str, list[Peer]] = {}
    fresh: list[Peer] = []
    for peer in peers:
        advert = peer.advert
        if peer.state is not PeerState.FOREIGN or advert.protocol != protocol \
                or not advert.fingerprint or advert.fingerprint in refused:
            continue
        if advert.pairing == "open":
            open_swarms.setdefault(advert.fingerprint, []).append(peer)
        elif advert.pairing == "fresh":
            fresh.append(peer)
    if len(open_swarms) > 1:
        names = ", ".join(sorted(open_swarms))
        return None, (f"several swarms in sight ({names}): this node asks none of them; paste "
                      "the key of the one to join (`python main.py swarm-key --set -`)")
    if open_swarms:
        ((swarm, members),) = open_swarms.items()
        return JoinTarget(swarm, _nearest(members)), f"asking swarm {swarm}"
    smaller = sorted((p for p in fresh if p.node_id < self_id), key=lambda p: p.node_id)
    if smaller:
        host = smaller[0]
        return JoinTarget(host.advert.fingerprint, (host,)), \
            f"asking new node {host.node_id} (the smallest new node id in sight)"
    if fresh:
        return None, "waiting for the other new nodes in sight to ask this one"
    return None, "no swarm in sight that takes join requests"


def _nearest(members: list[Peer]) -> tuple[Peer, ...]:
    return tuple(sorted(members, key=lambda p: p.node_id)[:MAX_ASKED])
