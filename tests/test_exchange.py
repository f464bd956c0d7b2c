"""The join exchange's pure parts: the cryptography (network/trust/exchange.py), the request table
(network/trust/joins.py) and the choice of swarm (network/trust/join_target.py). Honest runs,
wrong codes, replayed messages, a second joiner racing the first, a device in the middle, a
device posing as the swarm, floods and expiry."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from network.membership.records import Peer, PeerState
from network.trust.exchange import JoinerExchange, PairingError, member_code, normal_code
from network.trust.join_target import choose_target
from network.trust.joins import BURST, COLLECT_S, MAX_PER_NODE, REFILL_S, JoinHost, JoinRefused
from network.trust.swarm_key import SwarmKey
from network.wire import codec
from network.wire.address import Address
from network.wire.fields import WireDecodeError
from network.wire.pairing import JoinOffer, JoinReveal, JoinStatus, JoinWait
from network.wire.txt import PeerAdvert
from tests.swarm_keys import KEY, OTHER_KEY

FP = KEY.fingerprint
secrets32 = st.binary(min_size=32, max_size=32)
nonces = st.binary(min_size=16, max_size=16)


def joiner(node_id: str = "j1", private: bytes = b"\x01" * 32, nonce: bytes = b"\x02" * 16,
           swarm: str = FP) -> JoinerExchange:
    return JoinerExchange(node_id, "laptop", swarm, private, nonce)


def host(ttl_s: float = 60.0, **kw) -> JoinHost:
    return JoinHost("m1", FP, ttl_s=ttl_s, **kw)


def run(h: JoinHost, j: JoinerExchange, now: float = 0.0, address: str = "10.0.0.9",
        key: SwarmKey = KEY) -> str:
    """hello, offer, reveal: the code the member shows (the joiner shows `j.code`)."""
    j.offered(h.hello(j.hello(), address, now, key))
    return h.revealed(j.reveal(), now, key).code


@settings(max_examples=25, deadline=None)
@given(secrets32, nonces)
def test_an_honest_exchange_shows_one_code_and_delivers_the_key(private, nonce):
    h, j = host(), joiner(private=private, nonce=nonce)
    code = run(h, j)
    assert code == j.code and normal_code(code) == code and len(code) == 9
    request = h.approve("j1", None, 1.0, KEY)
    assert request.code == code and h.status("j1", j.commitment, 1.0).state == "approved"
    assert j.open(request.status(1.0)) == KEY
    assert KEY.secret not in codec.encode(request.status(1.0))  # only sealed on the wire


def test_every_member_of_a_swarm_shows_the_same_code():
    j = joiner()
    codes = {run(JoinHost(m, FP, ttl_s=60), j) for m in ("m1", "m2", "m3")}
    assert codes == {j.code}


def test_a_wrong_code_approves_nothing():
    h, j = host(), joiner()
    code = run(h, j)
    wrong = "0000-0000" if code != "0000-0000" else "1111-1111"
    with pytest.raises(JoinRefused) as refused:
        h.approve("j1", wrong, 1.0, KEY)
    assert refused.value.status == 404
    with pytest.raises(JoinRefused, match="not a code"):
        h.approve("j1", "12-34", 1.0, KEY)
    assert h.status("j1", j.commitment, 1.0).state == "pending"
    assert h.approve("j1", code.replace("-", ""), 1.0, KEY).sealed  # typed without the dash


def test_replayed_messages_change_nothing_and_open_nothing():
    h, j = host(), joiner()
    run(h, j)
    again = h.hello(j.hello(), "10.0.0.9", 1.0, KEY)  # a replayed hello: same offer, one request
    assert again.member_key == j.member_key and len(h) == 1
    assert h.revealed(j.reveal(), 1.0, KEY).code == j.code  # a replayed reveal: the same
    other = dataclasses.replace(j.reveal(), joiner_key=b"\x05" * 32)
    with pytest.raises(JoinRefused, match="already revealed"):
        h.revealed(other, 1.0, KEY)
    sealed = h.approve("j1", None, 1.0, KEY).status(1.0)
    # The approval of one exchange replayed to the joiner's next attempt opens nothing.
    later = joiner(private=b"\x03" * 32, nonce=b"\x04" * 16)
    run(host(), later)
    with pytest.raises(PairingError, match="does not open"):
        later.open(sealed)


def test_a_reveal_must_open_the_commitment_of_its_hello():
    h, j = host(), joiner()
    j.offered(h.hello(j.hello(), "a", 0.0, KEY))
    forged = dataclasses.replace(j.reveal(), nonce=b"\x09" * 16)
    with pytest.raises(JoinRefused, match="commitment") as refused:
        h.revealed(forged, 0.0, KEY)
    assert refused.value.status == 400 and h.status("j1", j.commitment, 0.0).code == ""
    low_order = dataclasses.replace(j.reveal(), joiner_key=bytes(32))
    with pytest.raises(JoinRefused):
        h.revealed(low_order, 0.0, KEY)


def test_a_second_joiner_racing_the_first_under_its_id_gets_nothing():
    h, first, second = host(), joiner(), joiner(private=b"\x07" * 32, nonce=b"\x08" * 16)
    code = run(h, first, address="10.0.0.5")
    intruder = run(h, second, address="10.0.0.66")
    assert code != intruder
    with pytest.raises(JoinRefused, match="2 machines ask to join as j1") as ambiguous:
        h.approve("j1", None, 1.0, KEY)  # approving by id alone would be a coin toss
    assert ambiguous.value.status == 409 and code in str(ambiguous.value)
    request = h.approve("j1", code, 1.0, KEY)  # the code the real machine shows
    assert first.open(request.status(1.0)) == KEY
    still = h.status("j1", second.commitment, 1.0)
    assert still.state == "pending" and still.status(1.0).sealed == b""  # never sealed to it
    with pytest.raises(PairingError):
        second.open(request.status(1.0))  # the first one's approval does not open for it


@settings(max_examples=25, deadline=None)
@given(secrets32, nonces, secrets32, nonces)
def test_a_device_in_the_middle_shows_different_codes_on_the_two_screens(jp, jn, ep, en):
    """Eve runs one exchange with the joiner (posing as the swarm) and one with the member
    (posing as the joiner): the two screens show different codes, and what the member seals is
    for Eve's key, not the joiner's, and the other way round."""
    h, real = host(), joiner(private=jp, nonce=jn)
    eve_as_joiner = joiner(private=ep, nonce=en)
    member_screen = run(h, eve_as_joiner)
    eve_offer = JoinOffer(node_id="m1", swarm=FP, member_key=eve_as_joiner.public, expires_s=60)
    joiner_screen = real.offered(eve_offer)
    assert (jp, jn) == (ep, en) or member_screen != joiner_screen


def test_a_device_posing_as_the_swarm_cannot_send_another_swarms_key():
    j = joiner()
    eve = JoinHost("eve", OTHER_KEY.fingerprint, ttl_s=60)
    with pytest.raises(JoinRefused, match="not"):  # it cannot even answer for our swarm
        eve.hello(j.hello(), "a", 0.0, OTHER_KEY)
    # Eve answers anyway, as if for FP, and seals her own key to the joiner.
    fake = JoinHost("eve", FP, ttl_s=60)
    j.offered(fake.hello(j.hello(), "a", 0.0, OTHER_KEY))
    fake.revealed(j.reveal(), 0.0, OTHER_KEY)
    with pytest.raises(PairingError, match="not " + FP):
        j.open(fake.approve("j1", None, 0.0, OTHER_KEY).status(0.0))


def test_members_that_disagree_are_caught():
    j = joiner()
    j.offered(host().hello(j.hello(), "a", 0.0, KEY))
    with pytest.raises(PairingError, match="poses as that swarm"):
        j.offered(JoinOffer(node_id="eve", swarm=FP, member_key=b"\x09" * 32, expires_s=1))
    with pytest.raises(PairingError, match="for swarm"):
        j.offered(JoinOffer(node_id="eve", swarm=OTHER_KEY.fingerprint,
                            member_key=j.member_key or b"", expires_s=1))


def test_one_address_is_cut_off_after_a_burst_and_later_let_in_again():
    h = host()
    for i in range(BURST):
        h.hello(joiner(f"n{i}").hello(), "10.0.0.66", 0.0, KEY)
    with pytest.raises(JoinRefused) as cut:
        h.hello(joiner("late").hello(), "10.0.0.66", 0.0, KEY)
    assert cut.value.status == 429 and int(cut.value.headers["Retry-After"]) >= 1
    h.hello(joiner("other").hello(), "10.0.0.7", 0.0, KEY)  # other addresses are not affected
    h.hello(joiner("late").hello(), "10.0.0.66", REFILL_S, KEY)  # one more after a refill


def test_the_table_is_bounded_in_all_and_per_node_id():
    h = host(max_pending=6)
    for i in range(MAX_PER_NODE):
        h.hello(joiner(private=bytes([i + 1]) * 32).hello(), f"10.0.1.{i}", 0.0, KEY)
    with pytest.raises(JoinRefused, match="claim node id j1"):
        h.hello(joiner(private=b"\x63" * 32).hello(), "10.0.2.1", 0.0, KEY)
    h.hello(joiner("k1").hello(), "10.0.2.2", 0.0, KEY)
    h.hello(joiner("k2").hello(), "10.0.2.3", 0.0, KEY)
    with pytest.raises(JoinRefused, match="already waiting") as full:
        h.hello(joiner("k3").hello(), "10.0.2.4", 0.0, KEY)
    assert full.value.status == 429 and len(h) == 6


def test_an_expired_request_cannot_be_approved_and_leaves_nothing():
    h, j = host(ttl_s=5.0), joiner()
    run(h, j)
    assert h.requests(4.9)
    with pytest.raises(JoinRefused, match="expired one cannot be approved") as late:
        h.approve("j1", None, 5.0, KEY)
    assert late.value.status == 404 and len(h) == 0
    with pytest.raises(JoinRefused):
        h.status("j1", j.commitment, 5.0)
    approved = host(ttl_s=5.0)
    run(approved, j)
    approved.approve("j1", None, 1.0, KEY)
    assert approved.requests(1.0 + COLLECT_S - 0.1) and not approved.requests(1.0 + COLLECT_S)


def test_a_refused_request_leaves_nothing():
    h, j = host(), joiner()
    run(h, j)
    assert [r.node_id for r in h.refuse("j1", 1.0)] == ["j1"] and len(h) == 0
    assert h.refuse("j1", 1.0) == []


def test_join_messages_round_trip_and_refuse_bad_blobs():
    j = joiner()
    for message, cls in [(j.hello(), type(j.hello())), (j.reveal(), JoinReveal),
                         (JoinWait(node_id="j1", commitment=j.commitment, wait_s=3.0), JoinWait),
                         (JoinStatus(state="pending", expires_s=2.0), JoinStatus)]:
        for kind in (codec.JSON, codec.MSGPACK):
            assert codec.decode(codec.encode(message, kind), kind, cls) == message
    wire = codec.encode(j.reveal(), codec.JSON).replace(b'"nonce":"', b'"nonce":"!')
    with pytest.raises(WireDecodeError, match="nonce"):
        codec.decode(wire, codec.JSON, JoinReveal)
    with pytest.raises(WireDecodeError, match="approved request carries"):
        JoinStatus.from_wire({"state": "approved"})
    assert member_code(KEY, j.reveal(), FP) != member_code(OTHER_KEY, j.reveal(), FP)


# --- which swarm a fresh node asks ---------------------------------------------------------------

def peer(node_id: str, fingerprint: str, pairing: str,
         state: PeerState = PeerState.FOREIGN) -> Peer:
    advert = PeerAdvert(node_id=node_id, boot_id="b1", protocol=1, api_port=1,
                        fingerprint=fingerprint, pairing=pairing)
    return Peer(advert, Address("10.0.0.1", 1), state, 0.0, None, 0, None, "x")


@given(st.permutations([peer("m2", "f1", "open"), peer("m1", "f1", "open"),
                        peer("x", "f9", ""), peer("fresh0", "f7", "fresh")]))
def test_the_one_open_swarm_in_sight_is_asked_whatever_the_order(peers):
    target, _why = choose_target(peers, "me", 1)
    assert target is not None and target.swarm == "f1"
    assert [p.node_id for p in target.members] == ["m1", "m2"]


@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=5, unique=True))
def test_fresh_nodes_merge_into_the_smallest_one(ids):
    """Every fresh node but the smallest asks the smallest it sees; the smallest asks nobody."""
    fresh = {i: peer(i, f"fp-{i}", "fresh") for i in ids}
    for me in ids:
        target, _why = choose_target([p for i, p in fresh.items() if i != me], me, 1)
        if me == min(ids):
            assert target is None
        else:
            assert target is not None and [p.node_id for p in target.members] == [min(ids)]


def test_several_swarms_refused_ones_and_other_protocols_are_not_asked():
    two = [peer("m1", "f1", "open"), peer("m2", "f2", "open")]
    target, why = choose_target(two, "me", 1)
    assert target is None and "several swarms" in why
    target, _why = choose_target(two, "me", 1, refused=frozenset({"f2"}))
    assert target is not None and target.swarm == "f1"
    member = peer("m3", "f3", "open", state=PeerState.ALIVE)  # our own swarm: not "another"
    old = peer("m4", "f4", "")  # an older node, or pairing off
    assert choose_target([member, old], "me", 1)[0] is None
    assert choose_target([peer("m1", "f1", "open")], "me", 2)[0] is None
