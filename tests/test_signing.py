"""Request and reply signatures: what each check refuses, with an injected clock."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from network.trust.signing import (
    KEY_ID_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayCache,
    Verifier,
    check_reply,
    reply_signature,
    request_signature,
    sign_reply,
    sign_request,
)
from network.trust.swarm_key import KeyRing, SwarmKey
from tests.swarm_keys import KEY, OTHER_KEY, RING

PATH = "/v1/federation/vote"
BODY = b"\x82\xa1v\x01\xaarequest_id\xa2r1"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def verifier(clock) -> Verifier:
    return Verifier(RING, audience="node-a", clock=clock)


def test_a_signed_request_verifies_once(verifier, clock):
    headers = sign_request(KEY, "POST", PATH, BODY, audience="node-a", now=clock.now)
    assert set(headers) == {KEY_ID_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER}
    assert headers[KEY_ID_HEADER] == KEY.fingerprint and len(headers[SIGNATURE_HEADER]) == 64
    verdict = verifier.verify("POST", PATH, headers, BODY)
    assert verdict.ok and verdict.key == KEY and verdict.nonce == headers[NONCE_HEADER]
    again = verifier.verify("POST", PATH, headers, BODY)
    assert (again.ok, again.status, again.code) == (False, 401, "replayed_request")


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PUT", PATH, BODY), ("POST", "/v1/federation/cancel", BODY), ("POST", PATH + "?x=1", BODY),
    ("POST", PATH, BODY + b"\x00"), ("POST", PATH, b""),
])
def test_anything_altered_breaks_the_signature(verifier, clock, method, path, body):
    headers = sign_request(KEY, "POST", PATH, BODY, audience="node-a", now=clock.now)
    verdict = verifier.verify(method, path, headers, body)
    assert (verdict.ok, verdict.status, verdict.code) == (False, 401, "bad_signature")


@pytest.mark.parametrize("header", [TIMESTAMP_HEADER, NONCE_HEADER])
def test_altered_timestamp_or_nonce_breaks_the_signature(verifier, clock, header):
    headers = sign_request(KEY, "POST", PATH, BODY, audience="node-a", now=clock.now,
                           nonce="a" * 22)
    headers[header] = str(int(clock.now) - 1) if header == TIMESTAMP_HEADER else "b" * 22
    assert verifier.verify("POST", PATH, headers, BODY).code == "bad_signature"


def test_missing_and_malformed_headers_are_401(verifier, clock):
    assert verifier.verify("POST", PATH, {}, BODY).code == "missing_signature"
    headers = sign_request(KEY, "POST", PATH, BODY, audience="node-a", now=clock.now)
    for name in headers:
        partial = {k: v for k, v in headers.items() if k != name}
        verdict = verifier.verify("POST", PATH, partial, BODY)
        assert (verdict.status, verdict.code) == (401, "missing_signature") and name in verdict.reason
    for name, bad in ((KEY_ID_HEADER, "XYZ"), (TIMESTAMP_HEADER, "-5"), (NONCE_HEADER, "short"),
                      (NONCE_HEADER, "a\nb" * 8), (SIGNATURE_HEADER, "00")):
        verdict = verifier.verify("POST", PATH, {**headers, name: bad}, BODY)
        assert (verdict.status, verdict.code) == (401, "malformed_signature")


def test_another_swarm_key_is_403_naming_only_fingerprints(verifier, clock):
    headers = sign_request(OTHER_KEY, "POST", PATH, BODY, audience="node-a", now=clock.now)
    verdict = verifier.verify("POST", PATH, headers, BODY)
    assert (verdict.status, verdict.code) == (403, "unknown_swarm_key")
    assert OTHER_KEY.fingerprint in verdict.reason and KEY.fingerprint in verdict.reason
    assert OTHER_KEY.text not in verdict.reason and KEY.text not in verdict.reason


def test_a_request_for_another_node_does_not_verify_here(verifier, clock):
    headers = sign_request(KEY, "POST", PATH, BODY, audience="node-b", now=clock.now)
    assert verifier.verify("POST", PATH, headers, BODY).code == "bad_signature"
    assert Verifier(RING, audience="node-b", clock=clock).verify("POST", PATH, headers, BODY).ok


def test_a_guessed_signature_with_our_key_id_is_401(verifier, clock):
    headers = sign_request(KEY, "POST", PATH, BODY, audience="node-a", now=clock.now)
    headers[SIGNATURE_HEADER] = "0" * 64
    assert verifier.verify("POST", PATH, headers, BODY).code == "bad_signature"


@pytest.mark.parametrize(("offset", "ok"), [(0, True), (30, True), (-30, True), (31, False),
                                            (-31, False), (-3600, False), (10**9, False)])
def test_skew_beyond_30_s_is_refused(verifier, clock, offset, ok):
    headers = sign_request(KEY, "POST", PATH, BODY, audience="node-a", now=clock.now + offset)
    verdict = verifier.verify("POST", PATH, headers, BODY)
    assert verdict.ok is ok
    if not ok:
        assert (verdict.status, verdict.code) == (401, "stale_request")
        assert "NTP" in verdict.reason


def test_a_replay_stays_refused_until_the_request_is_stale(verifier, clock):
    headers = sign_request(KEY, "POST", PATH, BODY, audience="node-a", now=clock.now)
    assert verifier.verify("POST", PATH, headers, BODY).ok
    for step in range(1, 31):
        clock.now += 1
        assert verifier.verify("POST", PATH, headers, BODY).code == "replayed_request", step
    clock.now += 1
    assert verifier.verify("POST", PATH, headers, BODY).code == "stale_request"
    clock.now += 60  # its nonce has expired from the cache by now
    fresh = sign_request(KEY, "POST", PATH, BODY, audience="node-a", now=clock.now)
    assert verifier.verify("POST", PATH, fresh, BODY).ok and len(verifier.replays) == 1


def test_the_replay_cache_is_bounded_and_a_dropped_nonce_cannot_replay():
    cache = ReplayCache(window_s=61, max_entries=3)
    for i, ts in enumerate((100, 101, 102)):
        assert cache.add(f"n{i}", ts, now=ts) is None
    assert cache.add("n3", 103, now=103) is None  # full: n0 (signed at 100) is dropped
    assert len(cache) == 3 and cache.floor == 100
    assert "too long ago" in (cache.add("n0", 100, now=104) or "")  # its replay
    assert "too long ago" in (cache.add("other", 100, now=104) or "")
    assert cache.add("n1", 101, now=104) == "replayed request (this nonce was already used)"
    assert cache.add("n4", 104, now=104) is None
    assert cache.add("late", 150, now=200) is None and len(cache) == 1  # the rest expired


def test_a_previous_key_still_verifies_during_a_rotation(clock):
    new = SwarmKey(bytes(range(50, 82)))
    rotated = Verifier(KeyRing(new, (KEY,)), audience="node-a", clock=clock)
    for key in (KEY, new):
        headers = sign_request(key, "POST", PATH, BODY, audience="node-a", now=clock.now)
        verdict = rotated.verify("POST", PATH, headers, BODY)
        assert verdict.ok and verdict.key == key
    old_only = Verifier(RING, audience="node-a", clock=clock)
    headers = sign_request(new, "POST", PATH, BODY, audience="node-a", now=clock.now)
    assert old_only.verify("POST", PATH, headers, BODY).status == 403


def test_reply_signatures():
    body = b'{"node_id":"a"}'
    headers = sign_reply(KEY, "nonce-1", body)
    assert check_reply(RING, "nonce-1", body, headers) is None
    assert check_reply(RING, "nonce-2", body, headers) is not None  # not our probe's answer
    assert check_reply(RING, "nonce-1", body + b" ", headers) is not None
    assert check_reply(RING, "nonce-1", body, {}) == "no swarm key (its answer is not signed)"
    other = sign_reply(OTHER_KEY, "nonce-1", body)
    assert check_reply(RING, "nonce-1", body, other) == (
        f"another swarm key (fingerprint {OTHER_KEY.fingerprint})")
    forged = {**other, KEY_ID_HEADER: KEY.fingerprint}
    assert "does not verify" in (check_reply(RING, "nonce-1", body, forged) or "")
    assert check_reply(RING, "nonce-1", body, {KEY_ID_HEADER: "zz"}) == "malformed swarm signature"


def test_a_reply_signature_never_passes_as_a_request_signature():
    # Domain separation: a node answering heartbeats is no signing oracle for requests.
    nonce = "n" * 22
    reply = reply_signature(KEY, nonce, BODY)
    assert reply != request_signature(KEY, "POST", PATH, "1700000000", nonce, BODY, "node-a")
    assert reply != request_signature(KEY, "", "", "", nonce, BODY)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=256), path=st.from_regex(r"/[a-z/]{0,30}(\?[a-z=&]{0,20})?",
                                                        fullmatch=True),
       flip=st.integers(min_value=0))
def test_signing_round_trips_and_any_flipped_byte_fails(body, path, flip):
    clock = Clock()
    headers = sign_request(KEY, "POST", path, body, audience="node-a", now=clock.now)
    assert Verifier(RING, audience="node-a", clock=clock).verify("POST", path, headers, body).ok
    if body:
        i = flip % len(body)
        altered = body[:i] + bytes([body[i] ^ 1]) + body[i + 1:]
        verdict = Verifier(RING, audience="node-a", clock=clock).verify("POST", path, headers, altered)
        assert verdict.code == "bad_signature"
