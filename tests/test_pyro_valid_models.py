"""Every case of Pyro's own structural test file under every objective of ours (issue 35).

``tests/pyro_upstream/valid_models.py`` is pyro-ppl's ``tests/infer/test_valid_models.py`` (commit ff6ae1c95),
vendored unchanged but for one import.  Each of its tests builds model/guide pairs, valid and invalid, and hands
them to ``assert_ok``, ``assert_error`` or ``assert_warning`` with an ELBO.  Here every case (a test and one value
of each of its parameters other than the ELBO) is run with each objective put where the file builds its ELBO, and
each pair it hands over is stepped as ``assert_ok`` does (one SVI step, then ``loss``, ``differentiable_loss`` and
``loss_and_grads`` at one seed), with validation on (Pyro's default) and off (``fit``'s).  The outcome is judged
against an independent oracle, Pyro's own estimator of the same quantity on the same pair and seed:

* ``stl`` reports the ELBO's value (only its gradient differs): it must give ``Trace_ELBO``'s loss and warnings,
  or refuse in one line, or fail exactly as ``Trace_ELBO`` fails on the pair (an invalid pair);
* ``meanfield`` must give ``Trace_ELBO``'s loss (every KL by Monte Carlo) or ``TraceMeanField_ELBO``'s (closed-form
  KLs), the latter only where Pyro did not warn that the mean-field restriction fails, or refuse in one line, or
  fail as ``TraceMeanField_ELBO`` does;
* ``iwae:3`` and ``iwae-dreg:3`` are log-means over each data point's particles; no pair of the file takes data,
  so each must refuse in one line (naming ``elbo`` and ``RenyiELBO(alpha=0)`` for such a pair);
* ``elbo`` and ``enum`` are Pyro's ``Trace_ELBO`` and ``TraceEnum_ELBO`` unchanged: they are run on the cases the
  file runs them on and must do what the file asserts.

"In one line" means a ``ConfigError`` whose message is one line, naming the objective; the unclear failures the
issue found (a bare ``IndexError``, ``AttributeError``, ``KeyError``, or the pair's own shape assertion failing
because an estimator sampled a site marked for enumeration) fail this test.

Left out, by name: the file's 7 tests of ``pyro.contrib.funsor`` (they need ``funsor``, not installed, and test
Pyro's funsor backend, not an ELBO of ours) and ``test_plate_stack_sizes`` (it calls no ELBO).
"""

import importlib.util
import inspect
import itertools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO
from pyro.infer.util import torch_item
from pyro.optim import Adam

from pyro_vae.errors import ConfigError
from pyro_vae.inference import IWAE, OBJECTIVES, STL, IWAEDReG
from pyro_vae.inference.mean_field import MeanFieldELBO


def _load_upstream():
    path = Path(__file__).parent / "pyro_upstream" / "valid_models.py"
    spec = importlib.util.spec_from_file_location("pyro_upstream_valid_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


UPSTREAM = _load_upstream()
#: The names under which the file builds its ELBOs; a run puts the objective under test in their place.
ELBO_NAMES = ("Trace_ELBO", "TraceGraph_ELBO", "TraceEnum_ELBO", "TraceMeanField_ELBO", "TraceTMC_ELBO",
              "TraceTailAdaptive_ELBO")
LEFT_OUT = {"test_plate_stack_sizes": "calls no ELBO"}
LOSS_ATOL = 1e-4  # the same seed draws the same values: losses differ only by float32 summation order


def _marks(fn, name):
    return [mark for mark in getattr(fn, "pytestmark", []) if mark.name == name]


def _parameter_values(mark):
    names = mark.args[0].split(",") if isinstance(mark.args[0], str) else list(mark.args[0])
    names = [name.strip() for name in names]
    for value in mark.args[1]:
        value = value.values if hasattr(value, "marks") else value
        yield dict(zip(names, value if len(names) > 1 else [value]))


def _combinations(fn):
    """Every parameter combination the file runs ``fn`` with, ``Elbo`` included."""
    axes = [list(_parameter_values(mark)) for mark in _marks(fn, "parametrize")]
    for combination in itertools.product(*axes):
        parameters = {}
        for values in combination:
            parameters.update(values)
        if parameters.get("strict_enumeration_warning") is not False:  # False: the same pairs, Pyro's warning off
            yield parameters


def _tests():
    """The file's tests but those left out (module doc)."""
    for name, fn in vars(UPSTREAM).items():
        if name.startswith("test_") and name not in LEFT_OUT and not any("funsor" in m.args for m in _marks(fn, "stage")):
            yield name, fn


def _cases():
    """``(test name, parameters but Elbo)`` for every case of the file, each once."""
    for name, fn in _tests():
        seen = set()
        for parameters in _combinations(fn):
            parameters.pop("Elbo", None)
            if _case_id((name, parameters)) not in seen:
                seen.add(_case_id((name, parameters)))
                yield name, parameters


def _pyro_runs(cls):
    """The cases the file itself runs the Pyro class ``cls`` on, as its ``Elbo`` parameter."""
    for name, fn in _tests():
        for parameters in _combinations(fn):
            if parameters.pop("Elbo", None) is cls:
                yield name, parameters


def _case_id(case):
    name, parameters = case
    shown = ",".join(f"{key}={getattr(value, '__name__', value)}" for key, value in parameters.items())
    return f"{name}[{shown}]".replace(" ", "") if shown else name


CASES = list(_cases())


@dataclass
class Outcome:
    """What happened to one pair the file handed over: Pyro's expectation and what the estimator did."""

    expected: str  # "ok", "error" or "warning": which assert_* the file called ("test": raised outside them)
    loss: float = math.nan
    error: BaseException = None
    warned: list = field(default_factory=list)
    consistent: bool = True


def _step(expected, model, guide, elbo, **kwargs):
    """Pyro's ``assert_ok``, recording instead of asserting."""
    outcome = Outcome(expected)
    pyro.clear_param_store()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            SVI(model, guide, Adam({"lr": 1e-6}), elbo).step(**kwargs)
            pyro.set_rng_seed(0)
            outcome.loss = elbo.loss(model, guide, **kwargs)
            pyro.set_rng_seed(0)
            try:
                differentiable = torch_item(elbo.differentiable_loss(model, guide, **kwargs))
            except (AttributeError, ValueError):  # as assert_ok: Pyro's ELBOs without one, or a constant loss
                differentiable = outcome.loss
            pyro.set_rng_seed(0)
            with_grads = elbo.loss_and_grads(model, guide, **kwargs)
            grads = [value.unconstrained().grad for _, value in pyro.get_param_store().items()]
            outcome.consistent = (abs(differentiable - outcome.loss) < 0.01 and abs(with_grads - outcome.loss) < 0.01
                                  and all(torch.isfinite(g).all() for g in grads if g is not None))
        except Exception as error:  # noqa: BLE001 - every failure is an outcome to judge
            outcome.error = error
    outcome.warned = sorted({str(w.message).splitlines()[0] for w in caught if issubclass(w.category, UserWarning)})
    return outcome


def run_case(case, make_elbo, validate, as_written=False):
    """The outcomes of one case with ``make_elbo(**kwargs)`` put where the file builds its ELBO; ``as_written``: the
    file's own ELBO names left as they are and ``make_elbo`` passed as its ``Elbo`` parameter (a Pyro class)."""
    name, parameters = case
    outcomes, namespace = [], vars(UPSTREAM)

    def recorder(expected):
        def record(model, guide, elbo, match=None, **kwargs):
            outcomes.append(_step(expected, model, guide, elbo, **kwargs))
        return record

    saved = {key: namespace[key] for key in ("assert_ok", "assert_error", "assert_warning") + ELBO_NAMES}
    namespace.update(assert_ok=recorder("ok"), assert_error=recorder("error"), assert_warning=recorder("warning"))
    if not as_written:  # a distinct callable per name: the file's `Elbo is TraceEnum_ELBO` must not hold for ours
        namespace.update({key: (lambda *args, **kwargs: make_elbo(*args, **kwargs)) for key in ELBO_NAMES})
    pyro.enable_validation(validate)
    pyro.set_rng_seed(0)  # a case draws its data when it is built
    try:
        fn = namespace[name]
        arguments = dict(parameters, Elbo=make_elbo) if "Elbo" in inspect.signature(fn).parameters else parameters
        fn(**arguments)
    except Exception as error:  # noqa: BLE001
        outcomes.append(Outcome("test", error=error))
    finally:
        namespace.update(saved)
        pyro.enable_validation(True)
        pyro.clear_param_store()
    return outcomes


def _ours(cls, **fixed):
    def make(*args, **kwargs):
        if fixed:  # the importance-weighted classes take K and the plate nesting, none of Trace_ELBO's options
            kwargs = dict(fixed, **{k: v for k, v in kwargs.items() if k == "max_plate_nesting"})
        return cls(**kwargs)
    return make


def _pyros(cls):
    def make(*args, **kwargs):
        return cls(**kwargs)
    return make


def _one_clear_line(outcome, objective):
    error = outcome.error
    return (isinstance(error, ConfigError) and len(str(error).strip().splitlines()) == 1
            and str(error).startswith(objective.split(":")[0]))


def _same_failure(outcome, reference):
    return (reference.error is not None and type(outcome.error) is type(reference.error)
            and str(outcome.error) == str(reference.error))


def _judge_stl(ours, elbo):
    if ours.error is not None:
        return _one_clear_line(ours, "stl") or _same_failure(ours, elbo)
    return (elbo.error is None and abs(ours.loss - elbo.loss) <= LOSS_ATOL and ours.consistent
            and ours.warned == elbo.warned)


def _judge_meanfield(ours, elbo, pyro_meanfield):
    if ours.error is not None:
        return _one_clear_line(ours, "meanfield") or _same_failure(ours, pyro_meanfield)
    restriction_failed = any("mean field restriction" in w for w in pyro_meanfield.warned)
    as_elbo = elbo.error is None and abs(ours.loss - elbo.loss) <= LOSS_ATOL
    as_pyro = (pyro_meanfield.error is None and not restriction_failed
               and abs(ours.loss - pyro_meanfield.loss) <= LOSS_ATOL)
    allowed = set(elbo.warned) | set(pyro_meanfield.warned)
    return (as_elbo or as_pyro) and ours.consistent and set(ours.warned) <= allowed


def _describe(outcome):
    if outcome.error is not None:
        return f"{type(outcome.error).__name__}: {outcome.error}"
    return f"loss {outcome.loss:.6g}, warned {outcome.warned}, consistent {outcome.consistent}"


def _assert_judged(judge, ours, *references):
    assert len(ours) == len(references[0]), "the estimator handed over a different number of pairs than its oracle"
    for i, outcome in enumerate(ours):
        refs = [reference[i] for reference in references]
        assert judge(outcome, *refs), (f"pair {i}: {_describe(outcome)}; oracle: "
                                       + "; ".join(_describe(ref) for ref in refs))


@pytest.mark.parametrize("validate", [True, False], ids=["validation", "no-validation"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_stl_gives_trace_elbos_loss_or_refuses_in_one_line(case, validate):
    _assert_judged(_judge_stl, run_case(case, _ours(STL), validate), run_case(case, _pyros(Trace_ELBO), validate))


@pytest.mark.parametrize("validate", [True, False], ids=["validation", "no-validation"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_meanfield_gives_a_pyro_estimators_loss_or_refuses_in_one_line(case, validate):
    _assert_judged(_judge_meanfield, run_case(case, _ours(MeanFieldELBO), validate),
                   run_case(case, _pyros(Trace_ELBO), validate), run_case(case, _pyros(TraceMeanField_ELBO), validate))


@pytest.mark.parametrize("objective", ["iwae:3", "iwae-dreg:3"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_importance_weighted_objectives_refuse_pairs_without_data_in_one_line(case, objective):
    cls = {"iwae:3": IWAE, "iwae-dreg:3": IWAEDReG}[objective]
    outcomes = run_case(case, _ours(cls, num_particles=3), validate=False)
    assert outcomes
    for outcome in outcomes:
        assert _one_clear_line(outcome, objective), _describe(outcome)
        assert "take no data" in str(outcome.error) and "RenyiELBO(alpha=0)" in str(outcome.error)


@pytest.mark.parametrize("objective, case", [(name, case) for name in ("elbo", "enum")
                                             for case in _pyro_runs(OBJECTIVES.get(name))],
                         ids=lambda value: value if isinstance(value, str) else _case_id(value))
def test_pyros_own_estimators_do_what_the_file_asserts(objective, case):
    for outcome in run_case(case, OBJECTIVES.get(objective), validate=True, as_written=True):
        if outcome.expected == "ok":
            assert outcome.error is None and outcome.consistent, _describe(outcome)
        elif outcome.expected == "error":  # Pyro's test configuration turns warnings into errors
            assert outcome.error is not None or outcome.warned, _describe(outcome)
        else:
            assert outcome.expected == "warning" and outcome.warned, _describe(outcome)


def test_every_case_of_the_file_is_run_or_left_out_by_name():
    tests = {name for name in vars(UPSTREAM) if name.startswith("test_")}
    funsor = {name for name in tests if any("funsor" in m.args for m in _marks(vars(UPSTREAM)[name], "stage"))}
    assert len(tests) == 104 and len(funsor) == 7
    assert {name for name, _ in CASES} == tests - funsor - set(LEFT_OUT)
    assert {OBJECTIVES.get("elbo"), OBJECTIVES.get("enum")} == {Trace_ELBO, TraceEnum_ELBO}
