"""Configuration: TOML file, LOCAL_SWARM_* environment and CLI merged into frozen dataclasses.
What each value may be (its type, its allowed range or choices) is config_values.py's."""
from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarm.errors import ConfigError
from swarm.node.config_values import coerce

ENV_PREFIX = "LOCAL_SWARM_"


@dataclass(frozen=True)
class ApiConfig:
    """[api]: where the OpenAI-compatible API listens and how much it accepts."""

    host: str = "127.0.0.1"
    port: int = 17615
    max_body_bytes: int = 1_048_576
    max_tokens_limit: int = 2048
    max_n: int = 16
    max_prompt_tokens: int = 32768
    max_concurrent_per_client: int = 64
    max_embedding_inputs: int = 2048
    max_embedding_tokens: int = 8192
    keys: tuple[str, ...] = ()


SWARM_MODEL = "swarm"  # --model swarm: serve the model the swarm's peers hold (with --federation)


@dataclass(frozen=True)
class ModelConfig:
    """[model]: which model, on which engine, in how many local instances."""

    path: str = ""
    backend: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    quant: str = "auto"
    instances: int = 1
    threads: int = 0
    queue_depth: int = 8
    cache_dir: str = "~/.cache/local-swarm"
    store_limit_gb: float = 50.0  # models fetched from peers, least recently used evicted first


@dataclass(frozen=True)
class ConsensusConfig:
    """[consensus]: the default strategy and its fan-out when a request does not choose."""

    strategy: str = "route"
    n: int = 3
    timeout_s: float = 120.0
    score: str = "logprob"


@dataclass(frozen=True)
class FederationConfig:
    """[federation]: finding peers on the LAN and answering together."""

    enabled: bool = False
    mdns: bool = True
    peers: tuple[str, ...] = ()
    peers_file: str = ""
    node_id: str = ""
    heartbeat_interval_s: float = 0.5
    approve_peers: bool = False  # peers with the key wait for `main.py peers approve ID`
    coordinator_priority: int = 0  # higher wins the coordinator election
    coordinator: bool = True  # False: never take the coordinator role (still votes, follows)
    fetch_limit_mb_s: float = 0.0  # cap on fetching a model from peers, MB/s (0: no cap)
    fetch_wait_s: float = 30.0  # how long to look for peers holding a model this node lacks
    pairing: bool = True  # join by approval: ask while fresh, take join requests as a member
    join_request_ttl_s: float = 300.0  # a join request not approved by then is gone
    # Secrets: kept out of repr so a logged config never shows them (network/trust/swarm_key.py).
    swarm_key: str = field(default="", repr=False)
    previous_swarm_keys: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class SpansConfig:
    """[spans]: serving a model split across the swarm's machines as Petals layer spans."""

    enabled: bool = False  # needs --federation; the span runtime is built once (setup-spans)
    max_memory_gb: float = 0.0  # memory this node may give its span of blocks; 0: half its RAM
    threads: int = 0  # torch threads of this node's span server (0: torch's default)
    dht_port: int = 0  # TCP port of the coordinator's hivemind DHT bootstrap (0: any free one)


@dataclass(frozen=True)
class Config:
    """The whole node configuration."""

    api: ApiConfig = field(default_factory=ApiConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    spans: SpansConfig = field(default_factory=SpansConfig)
    auto: bool = False
    log_level: str = "info"
    explicit: frozenset[str] = frozenset()

    @property
    def cache_path(self) -> Path:
        """The expanded cache folder (converted models, benchmark results)."""
        return Path(self.model.cache_dir).expanduser()


_SECTIONS = {"api": ApiConfig, "model": ModelConfig, "consensus": ConsensusConfig,
             "federation": FederationConfig, "spans": SpansConfig}


def known_keys() -> dict[str, Any]:
    """Every dotted key with its default, e.g. {"api.port": 17615, "auto": False}."""
    keys: dict[str, Any] = {}
    base = Config()
    for f in dataclasses.fields(Config):
        if f.name == "explicit":
            continue
        value = getattr(base, f.name)
        if f.name in _SECTIONS:
            for sub in dataclasses.fields(value):
                keys[f"{f.name}.{sub.name}"] = getattr(value, sub.name)
        else:
            keys[f.name] = value
    return keys


def _flatten(table: Mapping[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in table.items():
        if name in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: [{name}] must be a table")
            flat.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            flat[name] = value
    return flat


def env_key(dotted: str) -> str:
    """The environment variable for a dotted key: api.port -> LOCAL_SWARM_API_PORT."""
    return ENV_PREFIX + dotted.replace(".", "_").upper()


def load_config(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cli: Mapping[str, Any] | None = None,
) -> Config:
    """Merge defaults < file < env < CLI (dotted keys, None = unset); unknown keys are errors.

    `Config.explicit` records which keys were set anywhere, so `--auto` only fills the rest.
    """
    keys = known_keys()
    values: dict[str, Any] = {}
    layers: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        try:
            with open(path, "rb") as fh:
                layers.append((str(path), _flatten(tomllib.load(fh), str(path))))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    env = os.environ if env is None else env
    by_env = {env_key(k): k for k in keys}
    env_layer: dict[str, Any] = {}
    for name, raw in env.items():
        if name.startswith(ENV_PREFIX) and name != ENV_PREFIX + "CONFIG":
            if name not in by_env:
                raise ConfigError(f"environment: unknown variable {name}")
            env_layer[by_env[name]] = raw
    layers.append(("environment", env_layer))
    layers.append(("command line", {k: v for k, v in (cli or {}).items() if v is not None}))
    for source, layer in layers:
        for key, raw in layer.items():
            if key not in keys:
                raise ConfigError(f"{source}: unknown key {key!r} (see config.example.toml)")
            values[key] = coerce(key, raw, keys[key], source)
    sections = {
        name: cls(**{k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(name + ".")})
        for name, cls in _SECTIONS.items()
    }
    top = {k: v for k, v in values.items() if "." not in k}
    return Config(**sections, **top, explicit=frozenset(values))
