import os
from pathlib import Path

import pyro
import pytest
from hypothesis import settings

os.environ.setdefault("MPLBACKEND", "Agg")

# Every property-based test draws the same examples on every run (no flaky tests: a failure is reproduced by
# running it again), and keeps no example database between runs.
settings.register_profile("pyro-vae", derandomize=True, database=None)
settings.load_profile("pyro-vae")

#: The offline MNIST test files, beside the project as on the development and CI machines.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def fresh_pyro_state():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()
