"""The node-to-node HTTP routes, named once: the server registers them, the client, the heartbeat
prober, the auth rules, the OpenAPI document and the `peers` commands all use these names."""
from __future__ import annotations

FEDERATION_PREFIX = "/v1/federation/"
HEALTH_PATH = FEDERATION_PREFIX + "health"  # the heartbeat (signed over the caller's nonce)
PEERS_PATH = FEDERATION_PREFIX + "peers"  # the peer table, a read-only view
PLAN_PATH = FEDERATION_PREFIX + "plan"  # the coordinator's swarm plan
VOTE_PATH = FEDERATION_PREFIX + "vote"  # one consensus candidate
CANCEL_PATH = FEDERATION_PREFIX + "cancel"  # stop a running vote
ELECTION_PATH = FEDERATION_PREFIX + "election"  # Claim, Ack, Announce
APPROVE_PATH = FEDERATION_PREFIX + "approve"  # approve or revoke a peer, from this machine only
SPANS_PATH = FEDERATION_PREFIX + "spans"  # the span map and this node's span server (--spans)
MODELS_PATH = FEDERATION_PREFIX + "models"  # the manifests of the models a node holds
BLOB_PATH = FEDERATION_PREFIX + "models/blob/"  # + a file's sha256: its bytes (Range accepted)
JOIN_PATH = FEDERATION_PREFIX + "join"  # a fresh machine asks to join (unauthenticated, bounded)
JOIN_REVEAL_PATH = FEDERATION_PREFIX + "join/reveal"  # it opens its commitment: a code shows
JOIN_WAIT_PATH = FEDERATION_PREFIX + "join/wait"  # it waits for the approval (long poll)
JOINS_PATH = FEDERATION_PREFIX + "joins"  # the join requests this node holds, a read-only view
TETHER_PATH = FEDERATION_PREFIX + "tether"  # held open by followers: it closes when this node ends
STATS_PATH = FEDERATION_PREFIX + "stats"  # usage: tokens by strategy and by node, a read-only view
