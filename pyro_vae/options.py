"""Options declared once: a command's options are a frozen dataclass whose fields say everything about them.

Each field is made by :func:`option`: its default, its check (``check(name, value) -> value``, from
:mod:`pyro_vae.checks`, run on construction as scikit-learn's ``_parameter_constraints`` are in ``fit``), its
help, and how the command line reads it (``parse``: ``int``, ``float`` or ``str``; a ``bool`` field is a switch).
From that one declaration follow the Python keyword arguments (:meth:`Options.build`), the validation, the
CLI's flags with their defaults (:meth:`Options.add_arguments`), a run's config (``dataclasses.asdict``) and the
parameter list of the function's docstring (:meth:`Options.parameter_docs`).  A new option is one field.

An old spelling stays an alias for one release (``aliases``): as a flag, with a note on stderr when used; as a Python
keyword (``--particles`` gives ``particles=``), with a ``FutureWarning``.
"""

import argparse
import dataclasses
import inspect
import json
import sys
import warnings

from . import checks
from .errors import ConfigError, UnknownNameError


def option(default, help, check=None, parse=str, choices=None, aliases=(), cli=True, nargs=None):
    """A field of an :class:`Options` dataclass (module doc); ``help`` may be a callable (asked when shown), ``cli=False``
    keeps the field out of the command line, ``nargs="+"`` makes its flag take one value or more, apart or
    comma-separated (a tuple field, each value read by ``parse``; the tuple is checked when the options are made)."""
    return dataclasses.field(default=default, metadata={"help": help, "check": check, "parse": parse, "choices": choices,
                                                        "aliases": tuple(aliases), "cli": cli, "nargs": nargs})


@dataclasses.dataclass(frozen=True)
class Options:
    """Base of a command's options: every field is checked when an instance is made (or replaced)."""

    #: What the options are of, for messages (``fit``).
    command = "command"

    def __post_init__(self):
        for spec in dataclasses.fields(self):
            value, check = getattr(self, spec.name), spec.metadata["check"]
            given = value is not None or spec.default is not None  # None passes only where it is the default
            if check is not None and given:
                object.__setattr__(self, spec.name, check(spec.name, value))
            if isinstance(spec.default, bool):
                checks.switch(spec.name, value)
            if spec.metadata["choices"] is not None and given:
                checks.one_of(spec.name, value, spec.metadata["choices"])

    @classmethod
    def names(cls):
        return [spec.name for spec in dataclasses.fields(cls)]

    @classmethod
    def build(cls, options=None, **values):
        """``options`` (an instance; None: the defaults) with ``values`` in place of its fields, checked; a name
        that is no field is refused, listing the valid ones."""
        values = cls._renamed(values)
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise UnknownNameError(f"unknown {cls.command} option {unknown[0]!r}; expected one of: {', '.join(cls.names())}")
        if options is None:
            return cls(**values)
        if not isinstance(options, cls):
            raise ConfigError(f"options must be a {cls.__name__}, got {type(options).__name__}")
        return dataclasses.replace(options, **values)

    @classmethod
    def _old_spellings(cls):
        """``{old Python keyword: field}``, an alias's spelling as a keyword (``particles`` for ``--particles``)."""
        return {alias.lstrip("-").replace("-", "_"): spec.name for spec in dataclasses.fields(cls)
                for alias in spec.metadata["aliases"] if alias.lstrip("-").replace("-", "_") not in cls.names()}

    @classmethod
    def keywords(cls):
        """The Python keywords these options take: the fields and their old spellings (:meth:`_renamed`)."""
        return {*cls.names(), *cls._old_spellings()}

    @classmethod
    def _renamed(cls, values):
        """``values`` with an old spelling of a field under the field's name, and a FutureWarning saying so, for one
        release."""
        values = dict(values)
        for old, field in cls._old_spellings().items():
            if old in values:
                if field in values:
                    raise ConfigError(f"{old} and {field} are one {cls.command} option; give {field} only")
                warnings.warn(f"{cls.command}: {old}= is deprecated and will be removed in the next release; use {field}=",
                              FutureWarning, stacklevel=4)
                values[field] = values.pop(old)
        return values

    def values(self, exclude=()):
        """``{field: value}`` of these options, less the fields named in ``exclude``."""
        return {name: getattr(self, name) for name in self.names() if name not in exclude}

    @classmethod
    def from_mapping(cls, mapping, exclude=()):
        """The fields found in ``mapping`` (a preset, an ``argparse`` namespace's ``vars``) that are not None."""
        return {name: mapping[name] for name in cls.names() if name not in exclude and mapping.get(name) is not None}

    @classmethod
    def add_arguments(cls, group, exclude=(), presets=None):
        """A flag per field (``--batch-size`` for ``batch_size``) with its check, choices, help and default.

        ``presets`` (``{"quick": options, "full": options}`` of a study): every default None, so that a flag not given
        leaves the preset's value, and the help shows the presets' values of the fields they hold."""
        for spec in dataclasses.fields(cls):
            if not spec.metadata["cli"] or spec.name in exclude:
                continue
            flag = "--" + spec.name.replace("_", "-")
            kwargs = {"dest": spec.name, "help": help_text(spec) + _preset_values(spec, presets),
                      "default": spec.default if presets is None else None}
            if isinstance(spec.default, bool):
                kwargs["action"] = "store_true"
            elif spec.metadata["nargs"] is not None:  # each value read here, the tuple checked when the options are made
                kwargs.update(nargs=spec.metadata["nargs"], action=Joined, metavar=spec.name.upper(),
                              type=checks.argument_type(None, spec.name, _comma_separated(spec.metadata["parse"])))
            else:
                kwargs.update(type=checks.argument_type(spec.metadata["check"], spec.name, spec.metadata["parse"]),
                              choices=spec.metadata["choices"])  # refused in our words: the CLI parser's _check_value
            group.add_argument(flag, **kwargs)
            for alias in spec.metadata["aliases"]:
                group.add_argument(alias, dest=spec.name, type=kwargs.get("type"), help=argparse.SUPPRESS,
                                   default=argparse.SUPPRESS, action=deprecated_flag(flag))

    @classmethod
    def parameter_docs(cls):
        """The fields as reStructuredText ``:param`` lines, for the docstring of the function taking them."""
        return "\n".join(f"    :param {spec.name}: {help_text(spec)}"
                         + ("." if "default" in help_text(spec) else f" (default: ``{spec.default!r}``).")
                         for spec in dataclasses.fields(cls))

    @classmethod
    def signature_of(cls, function):
        """``function``'s signature with its ``**values`` spelled out as the fields, keyword-only with their
        defaults: what ``help()``, an IDE and Sphinx show."""
        signature = inspect.signature(function)
        parameters = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        fields = [inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=spec.default)
                  for spec in dataclasses.fields(cls)]
        return signature.replace(parameters=parameters + fields)


def documented(options_class):
    """Decorate a function taking ``options=`` and ``**values`` of ``options_class``: its signature shows the fields,
    and ``{options}`` in its docstring becomes their parameter list."""

    def decorate(function):
        function.__signature__ = options_class.signature_of(function)
        function.__doc__ = function.__doc__.replace("    {options}", options_class.parameter_docs())
        return function

    return decorate


def _preset_values(spec, presets):
    """`` (default: quick 0.05 1; full 0.01 0.1 1)``: the presets' values of the field ``spec``, where they hold it,
    else its own default; nothing without presets or where the help says the default."""
    if presets is None or "default" in help_text(spec) or isinstance(spec.default, bool):  # a switch: off unless given
        return ""
    if spec.name not in type(presets["full"]).names():
        return f" (default: {_shown(spec.default)})"
    shown = {which: _shown(getattr(preset, spec.name)) for which, preset in presets.items()}
    if len(set(shown.values())) == 1:
        return f" (default: {next(iter(shown.values()))})"
    return " (default: " + "; ".join(f"{which} {value}" for which, value in shown.items()) + ")"


def _shown(value):
    """A value as the command line spells it: a tuple as its items (a pair among them as NAME:VALUE), a mapping as JSON,
    None as none."""
    if value is None:
        return "none"
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, (tuple, list)):
        return " ".join(":".join(map(str, item)) if isinstance(item, (tuple, list)) else str(item) for item in value)
    return str(value)


def _comma_separated(parse):
    def read(text):
        return tuple(parse(piece.strip()) for piece in text.split(",") if piece.strip())

    return read


class Joined(argparse.Action):
    """A flag of several values, each given apart or comma-separated (``--hidden 256 64`` or ``--hidden 256,64``),
    stored as one tuple; its type reads one argument into a tuple."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, tuple(item for value in values for item in value))


def help_text(spec):
    """A field's help; a callable help is asked when shown, so a list of registered names is the current one."""
    text = spec.metadata["help"]
    return text() if callable(text) else text


def deprecated_flag(flag):
    class Deprecated(argparse.Action):
        """An old spelling of ``flag``: it works, with a note on stderr, for one release."""

        def __call__(self, parser, namespace, values, option_string=None):
            print(f"pyro-vae: note: {option_string} is deprecated and will be removed in the next release; use {flag}",
                  file=sys.stderr)
            setattr(namespace, self.dest, values)

    return Deprecated
