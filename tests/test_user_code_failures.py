"""A failure in a user's code behind ``--model`` ends in one line that names the user's file and line
(issue 38, item 3): whatever the exception, wherever it is raised (importing the file, calling the
factory, running the model), in the main process or a sweep's worker; ``PYRO_VAE_DEBUG=1`` (or
``--debug``) adds the traceback; a ``sys.exit`` in the user's code is an error, not a success."""

import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyro_vae.cli import main

PAIR = '''
import pyro, pyro.distributions as dist, torch

def model(x):
    with pyro.plate("rows", len(x)):
        z = pyro.sample("z", dist.Normal(torch.zeros(len(x)), 1.0))
        pyro.sample("x", dist.Normal(z.unsqueeze(-1), 1.0).to_event(1), obs=x.reshape(len(x), -1))

def guide(x):
    loc = pyro.param("loc", torch.tensor(0.0))
    with pyro.plate("rows", len(x)):
        pyro.sample("z", dist.Normal(loc.expand(len(x)), 1.0))
'''

#: name -> (source of the user's file, the line the message must name, what it must say)
BROKEN = {
    "syntax error": ("def make(:\n    pass\n", 1, "SyntaxError"),
    "missing import": ("import no_such_module_of_the_user\n", 1, "ModuleNotFoundError: No module named 'no_such_module_of_the_user'"),
    "raise at import": ("x = 1\nraise RuntimeError('broken at import')\n", 2, "RuntimeError: broken at import"),
    "factory raises": ("def make():\n    raise ValueError('latent_dim must be even')\n", 2, "ValueError: latent_dim must be even"),
    "type error inside": ("def make():\n    return len(5)\n", 2, "TypeError: object of type 'int' has no len()"),
    "recursion": ("def make():\n    return make()\n", 2, "RecursionError"),
    "exit at import": ("import sys\nsys.exit(0)\n", 2, "your code called sys.exit(0)"),
    "exit in factory": ("import sys\ndef make():\n    sys.exit(3)\n", 3, "your code called sys.exit(3)"),
    "model raises": (PAIR + "\ndef bad_model(x):\n    raise ValueError('model failed')\n\ndef make():\n"
                     "    import types\n    return types.SimpleNamespace(model=bad_model, guide=guide)\n",
                     (PAIR + "\ndef bad_model(x):\n").count("\n") + 1, "ValueError: model failed"),
}
REFUSED = {  # not the user's code failing, but what it returned or was given: one line, no file:line needed
    "returns a string": ("def make():\n    return 'a pair'\n", "returned a str, which is no model/guide pair"),
    "returns a class": ("from pyro_vae.models import VAE\ndef make():\n    return VAE\n", "returned the class VAE itself"),
    "unknown argument": ("def make(latent_dim=2):\n    return None\n", "got an unexpected keyword argument 'hidden'"),
}


def _fit(tmp_path, source, *extra):
    path = tmp_path / "user_pair.py"
    path.write_text(source)
    return main(["fit", "--data", "synthetic-patches", "--model", f"{path}:make", "--epochs", "1", "--batch-size", "64",
                 "--no-progress", "--out", str(tmp_path / "run"), *extra])


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_failure_in_the_users_code_is_one_line_naming_file_and_line(case, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PYRO_VAE_DEBUG", raising=False)
    source, line, said = BROKEN[case]
    assert _fit(tmp_path, source) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pyro-vae: error: "), err
    assert f"user_pair.py:{line}," in err[0] and said in err[0] and "--debug" in err[0]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_a_factory_returns_or_takes_is_checked_in_one_line(case, tmp_path, capsys):
    source, said = REFUSED[case]
    assert _fit(tmp_path, source, *(["--model-arg", "hidden=3"] if case == "unknown argument" else [])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0], err


def test_debug_shows_the_traceback_before_the_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYRO_VAE_DEBUG", "1")
    assert _fit(tmp_path, BROKEN["factory raises"][0]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and 'user_pair.py", line 2, in make' in err
    assert err.strip().splitlines()[-1].startswith("pyro-vae: error: your code raised ValueError")


def test_a_failure_in_a_sweep_worker_is_the_same_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PYRO_VAE_DEBUG", raising=False)
    source = PAIR + textwrap.dedent('''
        import types
        def make():
            def failing_guide(x):
                if "loc" in pyro.get_param_store():
                    raise ArithmeticError('guide failed after the first step')
                guide(x)
            return types.SimpleNamespace(model=model, guide=failing_guide)
        ''')
    path = tmp_path / "user_pair.py"
    path.write_text(source)
    code = main(["compare", "--quick", "--data", "synthetic-patches", "--model", f"{path}:make", "--objectives", "elbo",
                 "--replicates", "1", "--epochs", "1", "--executor", "local", "--workers", "1", "--no-progress",
                 "--out", str(tmp_path / "cmp")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "your code raised ArithmeticError: guide failed after the first step" in err[0] and "user_pair.py:" in err[0]


_ARG_TEXT = st.one_of(
    st.text(max_size=12),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["factors", "latent_dim", "event_shape", "hidden", "x", "1a"]),
              st.one_of(st.text(max_size=8), st.sampled_from(["0", "-1", "2", "1e300", "null", "[]", "{}", '"3"', "true",
                                                             "[" * 3000, "[1, [2]]", "NaN", "__import__('os')"]))))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(arguments=st.lists(_ARG_TEXT, min_size=1, max_size=2))
def test_random_model_arguments_fit_or_end_in_one_line_and_run_no_code(arguments, tmp_path_factory, capsys):
    """Random ``--model-arg`` values reach a user's factory only as JSON data: the command fits, or ends in one
    line of ours (exit 2); a value that reads like code is a string, never run (issue 38)."""
    out = tmp_path_factory.mktemp("args") / "run"
    argv = ["fit", "--data", "digits", "--digit", "0", "--model", "tests/pairs/robust_fa.py:make_robust_fa",
            *[token for text in arguments for token in ("--model-arg", text)], "--epochs", "1", "--no-progress", "--out", str(out)]
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's refusal of a malformed option (a value like '-r'): its line, exit 2
        code = stop.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code != 0:
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("pyro-vae: error: "), err
        assert not (out / "checkpoint.pt").exists()


def test_a_model_file_imports_a_module_beside_it(tmp_path, capsys):
    """Issue 35, item 10: Pyro's examples import ``utils/custom_mlp.py`` from beside the model file."""
    (tmp_path / "helpers_of_the_user").mkdir()
    (tmp_path / "helpers_of_the_user" / "__init__.py").write_text("")
    (tmp_path / "helpers_of_the_user" / "pairs.py").write_text(PAIR + "\nimport types\ndef make():\n"
                                                            "    return types.SimpleNamespace(model=model, guide=guide)\n")
    source = "from helpers_of_the_user.pairs import make\n"
    assert _fit(tmp_path, source) == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
