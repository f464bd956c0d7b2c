"""Which engines this machine has, for tests that need one: the transformers engine is an extra
(PyTorch has no build for Intel Macs that transformers 5 accepts), llama.cpp another."""
from __future__ import annotations

import pytest

from swarm.engine.loader import llamacpp_available, transformers_available

NO_TRANSFORMERS = ("the transformers engine is not installed (extra [transformers]; Intel Macs "
                   "have no torch that transformers 5 accepts)")
needs_transformers = pytest.mark.skipif(not transformers_available(), reason=NO_TRANSFORMERS)
needs_llamacpp = pytest.mark.skipif(not llamacpp_available(),
                                    reason="llama-cpp-python is not installed (extra [llamacpp])")
