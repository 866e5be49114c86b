"""What each ``pyro-vae`` command does, once :mod:`pyro_vae.cli` has parsed and checked its options.

Each ``*_command(args)`` returns the exit status; every error a user can cause is raised as a
:class:`~pyro_vae.errors.PyroVAEError` for :func:`pyro_vae.cli.main` to print as one line.
"""

import contextlib
import json
import sys
from pathlib import Path

from . import checks
from .summaries import format_headline


def model_factory(args, event_shape=None):
    """The user's factory named by ``--model`` with its arguments (and ``event_shape``, when given, where
    the factory takes it), or None for the catalogue VAE."""
    from .errors import ConfigError
    from .factories import ModelFactory, parse_model_arg

    if args.model is None:
        if args.model_arg or args.model_args:
            raise ConfigError("--model-arg and --model-args need --model path/to/file.py:factory")
        return None
    kwargs = {}
    if args.model_args:
        path = checks.named_file(args.model_args, "--model-args")
        try:
            kwargs = json.loads(path.read_text())
        except RecursionError:
            raise ConfigError(f"--model-args {path}: nested too deeply to read as JSON") from None
        except (OSError, ValueError) as error:
            raise ConfigError(f"--model-args {path}: {error}") from None
        if not isinstance(kwargs, dict):
            raise ConfigError(f"--model-args {args.model_args} must hold a JSON object, got {type(kwargs).__name__}")
    kwargs.update(parse_model_arg(text) for text in args.model_arg)
    factory = ModelFactory(args.model, kwargs)
    return factory.fill_event_shape(event_shape) if event_shape is not None else factory


def refuse_vae_options(args, defaults):
    """With ``--model``, options of the catalogue VAE set away from their ``{name: default}`` are a mistake."""
    from .errors import ConfigError

    given = [name for name, default in defaults.items() if getattr(args, name) != default]
    if args.model is not None and given:
        raise ConfigError(f"--{given[0].replace('_', '-')} builds the catalogue VAE; with --model pass your factory's "
                          f"arguments as --model-arg KEY=VALUE")


def catalogue_vae(args, data):
    from .likelihoods import parse_sigma_x
    from .models import VAE

    from .guides import GUIDES
    from .priors import PRIORS

    return VAE(data.event_shape, latent_dim=args.latent_dim, prior=args.prior, prior_options=part_options(args, PRIORS, args.prior),
               guide=args.guide, guide_options=part_options(args, GUIDES, args.guide), likelihood=args.likelihood,
               sigma_x=parse_sigma_x(args.sigma_x), network=args.network, hidden=args.hidden)


def part_options(args, registry, name):
    """The options given on the command line (``--prior-df``) of the part ``name`` of ``registry``; one that this part
    does not declare is refused, naming those it does."""
    from .errors import ConfigError

    given = {option: getattr(args, f"{registry.kind}_{option}") for option in registry.options_by_name()
             if getattr(args, f"{registry.kind}_{option}", None) is not None}
    declared = registry.options(name)
    for option in given:
        if option not in declared:
            raise ConfigError(f"--{registry.kind}-{option.replace('_', '-')} does not apply to the {name} {registry.kind}; "
                              f"it takes {', '.join(f'--{registry.kind}-{o}' for o in declared) or 'no options'}")
    return given


def fit_command(args):
    """``pyro-vae fit``; with ``--nproc P`` (:mod:`pyro_vae.launch`) or under ``torchrun`` every process runs
    it and the fit is data-parallel (:mod:`pyro_vae.inference.distributed`): rank 0 alone reports and draws."""
    from .inference import distributed

    if args.nproc > 1:
        from .launch import launch

        checks.device(args.device)  # what every rank would refuse, refused once
        return launch(args.nproc, [*args.argv, "--nproc", "1"])  # the last --nproc counts: each rank fits
    args.device = distributed.init_from_environment(args.device)
    try:
        parallel = distributed.DataParallel.current()
        return _fit(args, reports=parallel is None or parallel.writes)
    finally:
        distributed.leave()


def _fit(args, reports):
    import pyro

    from .contract import missing
    from .data import load_data
    from .factories import CATALOGUE_VAE, pair_module
    from .inference import fit
    from .inference.objectives import capabilities, make_objective
    from .inference.options import FitOptions
    from .plots import plot_reconstructions_and_samples

    options = FitOptions.build(**FitOptions.from_mapping(vars(args)))  # refused here, before any data are read
    if args.model is not None:
        from .cli import build_parser, catalogue_options

        defaults = vars(build_parser(studies=False).parse_args(["fit"]))
        refuse_vae_options(args, {name: defaults[name] for name in catalogue_options()})
    binarize = args.binarize
    if binarize == "auto":
        binarize = "dynamic" if args.likelihood == "bernoulli" and args.model is None else "none"
    data = load_data(args.data, args.data_dir, digit=args.digit, binarize=binarize, download=args.download)
    factory = model_factory(args, data.event_shape)
    pyro.set_rng_seed(options.seed)
    if factory is None:
        pair = catalogue_vae(args, data)
        model_entry = {"factory": CATALOGUE_VAE, "kwargs": pair.init_kwargs}
    else:
        pair, model_entry = factory(), factory.to_config()
    config = {"data": args.data, "data_dir": args.data_dir, "digit": args.digit, "binarize": binarize, "model": model_entry}
    result = fit(pair.model, pair.guide, data.train, val=data.val, test=data.test, module=pair_module(pair), out=args.out,
                 resume=args.resume, config=config, progress=False if args.no_progress else None, data_plate=args.data_plate,
                 options=options, dynamic_binarization=binarize == "dynamic")
    if not reports:
        return 0
    if capabilities(make_objective(options.objective, options.particles)).kl == "analytic-where-registered":
        ways = {"analytic": "in closed form", "monte-carlo": "by Monte Carlo (no KL registered for the pair, or the guide "
                                                      "samples it after a latent the model draws before it)"}
        print(f"{options.objective} computed the KL of " + ", ".join(f"site {site!r} {ways[path]}" for site, path in result.kl_paths.items()),
              file=sys.stderr)
    module = pair_module(pair)
    if missing(module, "generate", "event_shape", "reconstruct") is None and len(module.event_shape) == 3:
        plot_reconstructions_and_samples(module, data.test.to(args.device), result.run_dir / "figures" / "reconstructions_samples.png",
                                         title=f"{args.data}: {args.prior} prior, {args.likelihood} likelihood, {args.objective}")
    print(format_headline(result.metrics))
    print(data.summary(), file=sys.stderr)  # after the fit, so that a refusal stays the one line it is
    print(f"run directory: {result.run_dir} (data plate {result.data_plate!r})", file=sys.stderr)
    return 0


#: ``--estimator`` of evaluate: IS alone, or AIS too on every point or where IS's k-hat flags a point.
ESTIMATORS = {"is": None, "ais": "all", "ais-where-unreliable": "unreliable"}


def ais_options(args):
    """The :class:`~pyro_vae.inference.ais.AISOptions` of evaluate's arguments, or None for ``--estimator is``."""
    from .inference.ais import AISOptions

    where = ESTIMATORS[args.estimator]
    if where is None:
        return None
    return AISOptions.build(**{"bracket_points": 0, **AISOptions.from_mapping(vars(args))}, where=where)


def evaluate_command(args):
    from .data import load_data
    from .inference import evaluate, load_run
    from .inference.options import EvaluateOptions
    from .summaries import format_latent_table, format_summary

    run = load_run(args.run_dir, device=args.device, model=args.model)
    config = run.config
    data = load_data(config["data"], args.data_dir or config.get("data_dir"), digit=config.get("digit"),
                     binarize=config.get("binarize", "none"))
    x = getattr(data, args.split).to(args.device)
    options = EvaluateOptions.build(**EvaluateOptions.from_mapping(vars(args)), ais=ais_options(args))
    result = evaluate(run.model.model, run.model.guide, x, out=run.path, data_plate=config.get("data_plate"), options=options)
    if "latents" in result:
        print(format_latent_table(result))
    print(format_summary(result))
    print(f"wrote {run.path / 'evaluation.json'} and what ran into {run.path}", file=sys.stderr)
    return 0


def compare_runs_command(args):
    from .inference import compare_runs

    from .inference.options import CompareRunsOptions

    options = CompareRunsOptions.build(**CompareRunsOptions.from_mapping(vars(args)))
    result = compare_runs(args.run_dirs, out=args.out, progress=True, models=args.model, ais=ais_options(args),
                          options=options)
    print(result)
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


@contextlib.contextmanager
def nothing_left_if_refused(out):
    """A study refused before it did any work leaves no trace of a ``--out`` that did not exist or was empty
    (so the corrected command is not refused as "a study started with other options")."""
    from pathlib import Path

    existed = Path(out).exists()
    fresh = not existed or (Path(out).is_dir() and not any(Path(out).iterdir()))
    try:
        yield
    except (Exception, SystemExit):
        if fresh:
            from .analyses.common import discard_unstarted

            discard_unstarted(out, existed)
        raise


def analyze_command(args):
    from .analyses import ANALYSES

    return _run_study(ANALYSES.get(args.analysis).load(), args)


def compare_command(args):
    from .analyses import compare

    return _run_study(compare, args)


def _run_study(study, args):
    """Run ``study`` (its module) with the flags given (``cli._add_study_arguments``) in place of its preset's values;
    the user's pair, where the study takes one, from ``--model`` and its arguments."""
    from .analyses.common import MODEL_KEYS, TRAINING_KEYS

    options = type(study.PRESETS["full"]).names()
    keys = {*options, *TRAINING_KEYS}  # the study's flags
    values = {key: value for key, value in vars(args).items() if key in keys and value is not None}
    if "model" in options:
        refuse_vae_options(args, dict.fromkeys(key for key in MODEL_KEYS if key in options))
        factory = model_factory(args)
        values["model_kwargs"] = factory.kwargs if factory else None
    with nothing_left_if_refused(args.out):
        headline = study.run(args.out, quick=args.quick, data_dir=args.data_dir, progress=False if args.no_progress else None,
                             **values)
    print(format_headline(headline))
    tables = ", ".join(sorted(path.name for path in Path(args.out).glob("*.csv")))
    print(f"wrote {args.out}: {tables}, headline.json and figures", file=sys.stderr)
    return 0


def report_command(args):
    from .analyses.report import write_report

    path = write_report(args.directories, args.out)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def after_interruption(args):
    """What an interrupted command left and how to go on: true for what is on disk now."""
    command = getattr(args, "command", None)
    if command == "fit":
        from .rundir import RunDir

        run = RunDir(args.out)
        epochs = run.finished_epochs()
        if epochs:
            return f"{run} keeps the checkpoint of epoch {epochs} (continue with --resume)"
        return f"no epoch had finished, so {run} holds no checkpoint; run the same command again to start over"
    if command == "evaluate":
        return "the finished chunks of importance samples are kept; run the same command again to continue"
    if command in ("analyze", "compare"):
        return f"the finished fits in {args.out} are kept; run the same command again to skip them and go on"
    return "nothing was written"
