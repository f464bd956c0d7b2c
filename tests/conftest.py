"""Shared fixtures: the real embedded model (loaded once) and a real API server on loopback."""
from __future__ import annotations

import os

import pytest

from swarm.models.store import force_offline
from swarm.node.config import load_config

force_offline()


@pytest.fixture(scope="session")
def node_config():
    """Defaults plus the user's model cache, so the one-time GGUF conversion is reused."""
    return load_config(env={k: v for k, v in os.environ.items()
                            if k == "LOCAL_SWARM_MODEL_CACHE_DIR"},
                       cli={"model.backend": "transformers", "model.instances": 1})


@pytest.fixture(scope="session")
def transformers_pool(node_config):
    """One real transformers instance of the embedded model (skips where it is not installed)."""
    from swarm.engine.loader import load_backends, plan_from_config, transformers_available
    from swarm.engine.pool import InstancePool
    from tests.engines import NO_TRANSFORMERS

    if not transformers_available():
        pytest.skip(NO_TRANSFORMERS)
    pool = InstancePool(load_backends(plan_from_config(node_config), node_config),
                        queue_depth=4)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def api_server(transformers_pool, node_config):
    """The real OpenAI API over the real model, on 127.0.0.1 with an ephemeral port."""
    from network.api.app import build_app
    from tests.server import ServerThread

    server = ServerThread(lambda: build_app(transformers_pool, node_config.api)).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llamacpp_server(node_config):
    """The same API over the embedded model on llama.cpp, the engine users get by default (one
    instance; skips where llama-cpp-python is not installed)."""
    from network.api.app import build_app
    from swarm.engine.loader import llamacpp_available, load_backends, plan_from_config
    from swarm.engine.pool import InstancePool
    from tests.server import ServerThread

    if not llamacpp_available():
        pytest.skip("llama-cpp-python is not installed (extra [llamacpp])")
    config = load_config(env={}, cli={"model.backend": "llamacpp", "model.instances": 1})
    pool = InstancePool(load_backends(plan_from_config(config), config), queue_depth=4)
    server = ServerThread(lambda: build_app(pool, config.api)).start()
    yield server
    server.stop()
    pool.close()
