import os
from pathlib import Path

import pyro
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

#: The offline MNIST test files, beside the project as on the development and CI machines.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def fresh_pyro_state():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()
