"""Command line: ``pyro-vae fit ...`` (also ``python -m pyro_vae ...``).

Every error a user can cause ends in one line on stderr, ``pyro-vae: error: ...``, and exit status 2.
"""

import argparse
import os
import sys
import textwrap

from . import checks, commands, usercode
from .errors import PyroVAEError
from .launch import end_failed_rank, launched_rank, leave_crash, leave_error_line
from .options import Joined, deprecated_flag

MAIN_DEFAULTS = dict(data="digits", latent_dim=8, hidden="256,64")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; an option's default is added to its help where the help does
    not say it already (``none`` for None; a switch, off by default, and a repeatable option say nothing)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (not action.option_strings or "default" in text or action.default is argparse.SUPPRESS or action.nargs == 0
                or action.default == [] or action.required):
            return text
        default = "none" if action.default is None else action.default
        return f"{text} (default: {default})" if text else f"default: {default}"


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line errors of the rest of the CLI (no usage block; ``--help`` has it)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"pyro-vae: error: {message} (see {self.prog} --help)\n")

    def _check_value(self, action, value):
        """A value outside a flag's choices (a command, a study, an executor) is refused in the words of every unknown
        name (:func:`pyro_vae.checks.one_of`), not argparse's "invalid choice"."""
        if action.choices is not None and value not in action.choices:
            try:
                checks.one_of(action.dest, value, list(action.choices))
            except PyroVAEError as error:
                raise argparse.ArgumentError(action, str(error)) from None


_COUNT = {name: checks.argument_type(checks.positive_int, name) for name in ("latent_dim", "nproc")}


def _widths(text):
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        widths = None
    if not widths or any(w <= 0 for w in widths):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive layer widths like 256,64; got {text!r}")
    return widths


def _add_ais_options(parser, estimators, bracket=True):
    from .inference.ais import AISOptions

    group = parser.add_argument_group("annealed importance sampling (pyro_vae.inference.ais.AISOptions)")
    group.add_argument("--estimator", default="is", choices=estimators,
                       help="log p(x) by IS alone, by AIS too on every point, or by AIS on the points whose IS k-hat is "
                            "above the threshold" if bracket else "log p(x) of every run by IS or by AIS")
    AISOptions.add_arguments(group, exclude=() if bracket else ("bracket_points",))


def _add_model_options(parser):
    from .data import BINARIZE_MODES, DATASETS
    from .guides import GUIDES
    from .likelihoods import LIKELIHOODS
    from .networks import NETWORKS
    from .priors import PRIORS

    group = parser.add_argument_group("data")
    group.add_argument("--data", default=MAIN_DEFAULTS["data"], help=f"data set: {', '.join(DATASETS.names())} (default: digits, bundled)")
    group.add_argument("--data-dir", help="folder with the MNIST IDX files (default: $PYRO_VAE_DATA_DIR)")
    group.add_argument("--download", action="store_true", help="let torchvision download full MNIST into --data-dir (needs a network)")
    group.add_argument("--digit", type=int, action="append", help="keep only this digit class (repeatable)")
    group.add_argument("--binarize", default="auto", help=f"{', '.join(BINARIZE_MODES)} or auto (dynamic for bernoulli, else none)")

    group = parser.add_argument_group("model")
    group.add_argument("--latent-dim", type=_COUNT["latent_dim"], default=MAIN_DEFAULTS["latent_dim"], help="latent dimension d (default 8)")
    group.add_argument("--prior", default="normal", help=f"{', '.join(PRIORS.names())} (default normal)")
    _add_part_options(group, PRIORS)
    group.add_argument("--guide", default="normal", help=f"{', '.join(GUIDES.names())} (default normal)")
    _add_part_options(group, GUIDES)
    group.add_argument("--likelihood", default="bernoulli", help=f"{', '.join(LIKELIHOODS.names())} (default bernoulli)")
    group.add_argument("--sigma-x", default="1.0", help="gaussian/laplace scale: a number, shared, per-feature or per-sample")
    group.add_argument("--network", default="mlp", help=f"encoder network: {', '.join(NETWORKS.names())}; the decoder mirrors it")
    group.add_argument("--encoder", dest="network", default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                       action=deprecated_flag("--network"))
    group.add_argument("--hidden", type=_widths, nargs="+", action=Joined, default=MAIN_DEFAULTS["hidden"],
                       help="mlp hidden widths, apart or comma-separated (default 256,64)")
    _add_pair_options(parser)


def catalogue_options():
    """The destinations of ``pyro-vae fit``'s model group: the options that build the catalogue VAE."""
    parser = _Parser()
    _add_model_options(parser)
    group = next(group for group in parser._action_groups if group.title == "model")
    return [action.dest for action in group._group_actions]


def _add_part_options(group, registry):
    """A flag ``--<kind>-<option>`` per option the registry's parts declare (:meth:`Registry.options_by_name`), its
    default the chosen part's own."""
    for name, parts in registry.options_by_name().items():
        spec = next(iter(parts.values()))
        dest = f"{registry.kind}_{name}"
        defaults = {part: f"{field.default:g}" for part, field in parts.items()}
        default = (next(iter(defaults.values())) if len(set(defaults.values())) == 1 else
                   ", ".join(f"{part} {value}" for part, value in defaults.items()))
        group.add_argument(f"--{registry.kind}-{name.replace('_', '-')}", dest=dest, default=None,
                           type=checks.argument_type(spec.metadata["check"], dest, spec.metadata["parse"]),
                           help=f"{spec.metadata['help']} of the {', '.join(parts)} {registry.kind} (default: {default})")


def _add_pair_options(parser):
    group = parser.add_argument_group("your own model/guide pair (instead of the catalogue VAE)")
    group.add_argument("--model", help="a factory of your pair: path/to/file.py:factory or package.module:factory; it returns "
                       "an object with model and guide (see pyro_vae.contract)")
    group.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                       help="a keyword argument of the factory, the value read as JSON where it parses (repeatable)")
    group.add_argument("--model-args", metavar="FILE.json", help="a JSON object of keyword arguments of the factory")
    group.add_argument("--data-plate", help="the name of the plate over data points (default: found)")


def _commands(parser):
    """The parsers that end a command line: each command's, and each study's under ``analyze``."""
    for command in parser._subparsers._group_actions[0].choices.values():
        yield from _commands(command) if command._subparsers is not None else (command,)


def _add_studies(analyze):
    """``pyro-vae analyze NAME``: a parser per study of :data:`~pyro_vae.analyses.ANALYSES`."""
    from .analyses import ANALYSES

    studies = analyze.add_subparsers(dest="analysis", metavar="NAME", required=True,
                                     title="studies, with their minutes on 2 CPU cores (full preset / --quick; ~ an estimate)")
    for name in ANALYSES.names():
        study = ANALYSES.get(name)
        minutes = f"{'~' if study.full_minutes_estimated else ''}{study.full_minutes:g} / {study.quick_minutes:g} min"
        _add_study_arguments(studies.add_parser(name, help=f"{study.summary} [{minutes}]"), study.load())


#: The fields of a study's options that the pair's own flags give (:func:`_add_pair_options`), where it has them.
_PAIR_FIELDS = ("model", "model_kwargs", "data_plate")


def _add_study_arguments(parser, module):
    """The flags of a study (``module`` with ``STUDY`` and ``PRESETS``), built from its options class, whose presets
    show as the defaults, and from the fields of FitOptions that reach its fits; a study that takes a pair of the user's
    (a ``model`` field) gets the flags of ``pyro-vae fit --model``."""
    from .analyses.common import TRAINING_KEYS
    from .inference.options import FitOptions

    study, presets = module.STUDY, module.PRESETS
    options = type(presets["full"])
    about = "about " if study.full_minutes_estimated else ""
    parser.description = textwrap.fill(
        f"{study.summary[0].upper()}{study.summary[1:]}. On 2 CPU cores: {about}{study.full_minutes:g} min with the full "
        f"preset, {study.quick_minutes:g} min with --quick. A flag not given keeps the preset's value "
        f"({module.__name__}.PRESETS).", 84)
    parser.add_argument("--quick", action="store_true", help="the small preset the tests run")
    parser.add_argument("--out", required=True, help="directory for the study's numbers, figures and fits")
    parser.add_argument("--data-dir", help="folder with the MNIST IDX files (default: $PYRO_VAE_DATA_DIR)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    pair = "model" in options.names()
    options.add_arguments(parser.add_argument_group(f"the study ({options.__name__})"), presets=presets,
                          exclude=_PAIR_FIELDS if pair else ())
    others = [key for key in FitOptions.names() if key not in TRAINING_KEYS or key in options.names()]
    if len(others) < len(FitOptions.names()):
        FitOptions.add_arguments(parser.add_argument_group("each fit of the catalogue VAE (FitOptions; the study sets the "
                                                           "objective)"), exclude=others, presets=presets)
    if pair:
        _add_pair_options(parser)


def build_parser(studies=True):
    """The parser of ``pyro-vae``; ``studies=False`` leaves out the studies' own parsers, which import every study."""
    from .inference.options import SPLITS, CompareRunsOptions, EvaluateOptions, FitOptions

    parser = _Parser(prog="pyro-vae", description="Variational autoencoders as Pyro model/guide pairs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subcommands = parser.add_subparsers(dest="command", required=True)

    fit = subcommands.add_parser("fit", help="fit a VAE and write a run directory")
    _add_model_options(fit)
    group = fit.add_argument_group("inference (pyro_vae.inference.options.FitOptions)")
    FitOptions.add_arguments(group)
    group.add_argument("--nproc", type=_COUNT["nproc"], default=1, help="fit data-parallel in this many local processes "
                       "(gloo on cpu; nccl on cuda, one GPU each); across machines use torchrun")
    group.add_argument("--out", default="runs/latest", help="run directory")
    group.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")

    evaluate = subcommands.add_parser("evaluate", help="evaluate a fitted run: log-likelihood, latents, PSIS, figures")
    evaluate.add_argument("run_dir", help="run directory written by pyro-vae fit")
    EvaluateOptions.add_arguments(evaluate.add_argument_group("evaluation (pyro_vae.inference.options.EvaluateOptions)"))
    evaluate.add_argument("--max-memory", type=_memory, default="128MB", help="memory per chunk of importance samples "
                          "(default 128MB, the fastest measured on CPU)")
    evaluate.add_argument("--split", default="test", choices=SPLITS, help="the split to score")
    evaluate.add_argument("--data-dir", help="override the run's data directory")
    _add_ais_options(evaluate, tuple(commands.ESTIMATORS))
    evaluate.add_argument("--device", default="cpu", help="where the evaluation runs: cpu, cuda, cuda:1, ...")
    evaluate.add_argument("--model", help="the factory of the run's pair when it is not the catalogue's (path/to/file.py:factory "
                          "or package.module:factory): pyro-vae runs no code that a run directory names, so you name it; "
                          "it must be the one the run's config.json records")

    runs = subcommands.add_parser("compare-runs", help="score fitted runs on the same test points and compare them, paired",
                               description="Each run's mean log p(x) (importance-sampled) +- its standard error over test "
                               "points, and every difference with its paired standard error, as az.compare does "
                               "(see pyro_vae.inference.model_comparison). Writes nothing unless --out is given.")
    runs.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by pyro-vae fit (two or more)")
    CompareRunsOptions.add_arguments(runs)
    runs.add_argument("--max-memory", type=_memory, default="128MB", help="memory per chunk of importance samples "
                      "(default: 128MB)")
    _add_ais_options(runs, ("is", "ais"), bracket=False)
    runs.add_argument("--out", metavar="FILE.json", help="also write the result to this JSON file")
    runs.add_argument("--model", action="append", default=[], metavar="FACTORY",
                      help="the factory of a pair outside the catalogue, for the runs whose config.json records it "
                      "(repeatable): pyro-vae runs no code that a run directory names, so you name it")

    analyze = subcommands.add_parser("analyze", help="run one of the seed studies",
                                     description="Each study has its own options: pyro-vae analyze NAME --help.")
    if studies:
        _add_studies(analyze)

    from .analyses import compare as compare_study

    _add_study_arguments(subcommands.add_parser("compare", help="compare inference objectives on one model (fits in "
                                                "parallel, resumable); also pyro-vae analyze compare"), compare_study)

    report = subcommands.add_parser("report", help="gather analyses and runs into one self-contained HTML page")
    report.add_argument("directories", nargs="+", help="analysis or run directories")
    report.add_argument("--out", default="report.html", help="the HTML file to write")
    for command in _commands(parser):
        command.add_argument("--debug", action="store_true", help=f"on an error, print the traceback too (also: {usercode.DEBUG_VARIABLE}=1)")
    return parser


def _version():
    """This package's version and those of the libraries its numbers depend on, for a bug report."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    libraries = ", ".join(f"{name} {installed(name)}" for name in ("torch", "pyro-ppl", "arviz", "numpy", "scikit-learn"))
    return f"{installed('pyro-vae')} ({libraries}, Python {platform.python_version()})"


_UNITS = {"": 1, "B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30}


def _memory(text):
    import re

    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMG]?B?)\s*", text.upper())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a memory size like 512MB or 2GB; got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    """Run a command; every error a user can cause is one line on stderr and exit status 2 (module doc).

    A failure in the user's own code (a factory, a model, a guide; :mod:`pyro_vae.usercode`) is one line
    naming its file and line; ``--debug`` or ``PYRO_VAE_DEBUG=1`` adds the traceback before it."""
    import signal

    if threading_main() and launched_rank() is None:
        # SIGTERM ends a fit as cleanly as Ctrl-C; a rank of fit --nproc is ended by its launcher when another
        # rank failed, which has said why: it goes quietly (a handler there printed a traceback from atexit)
        signal.signal(signal.SIGTERM, _terminate)
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = build_parser(studies="analyze" in argv).parse_args(argv)  # a bad option: argparse's one line and exit 2 (_Parser.error)
    args.argv = argv
    if args.debug:
        os.environ[usercode.DEBUG_VARIABLE] = "1"  # for a sweep's worker processes too
    try:
        return {"fit": commands.fit_command, "evaluate": commands.evaluate_command, "analyze": commands.analyze_command,
                "compare": commands.compare_command, "compare-runs": commands.compare_runs_command,
                "report": commands.report_command}[args.command](args)
    except KeyboardInterrupt:
        if launched_rank() is None:  # a rank that pyro-vae fit --nproc started was stopped by the launcher
            print(f"pyro-vae: interrupted; {commands.after_interruption(args)}", file=sys.stderr)
        return end_failed_rank(130)
    except (Exception, SystemExit) as error:
        line = _error_line(error)
        if line is None and leave_crash(error):
            return end_failed_rank(1)
        if line is None:
            raise  # no user code on the stack: a bug of pyro-vae's (or torch's, Pyro's) keeps its traceback
        if usercode.debugging(args.debug):
            usercode.print_traceback(error)
        if not leave_error_line(f"pyro-vae: error: {line}"):
            print(f"pyro-vae: error: {line}", file=sys.stderr)
        return end_failed_rank(2)


def _error_line(error):
    """The one line for an error a user can cause, or None for a bug of ours."""
    from .files import os_error_text

    if isinstance(error, PyroVAEError):
        return str(error)
    if isinstance(error, MemoryError):
        return "out of memory; ask for smaller networks, batches or K"
    user = usercode.as_user_code_error(error)
    if user is not None:
        return str(user)
    if isinstance(error, OSError):  # what the file system refused where no check of ours names it
        return os_error_text(error) + (f" ({error.filename})" if error.filename else "")
    return None

def threading_main():
    import threading

    return threading.current_thread() is threading.main_thread()
