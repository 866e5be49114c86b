"""Name -> factory tables, so every swappable part can be chosen by name in the CLI and in Python."""

from .errors import UnknownNameError


class Registry:
    """A table of named factories of one kind of part (priors, likelihoods, ...).

    ``registry.get(name)`` raises :class:`~pyro_vae.errors.UnknownNameError` listing the valid names,
    which is the one place that message is written.  A part registered with ``options`` declares the
    keywords its factory takes, each made by :func:`pyro_vae.options.option` (default, help, check); the CLI
    builds its ``--<kind>-<option>`` flags from them (``--guide-rank``, ``--prior-df``).  ``discover(registry)``, if
    given, registers the parts the first time the registry is read (the studies, found in their package).
    """

    def __init__(self, kind, discover=None):
        self.kind = kind
        self._factories = {}
        self._options = {}
        self._about = {}
        self._discover = discover

    def _found(self):
        """The factories, after discovery has run once."""
        if self._discover is not None:
            discover, self._discover = self._discover, None
            discover(self)
        return self._factories

    def register(self, name, options=None, about=None):
        """Register a factory under ``name``; ``about``: what it is in one sentence, where its docstring is not ours to
        write (a class of Pyro's), else its docstring's first sentence serves (:meth:`about`)."""
        def decorator(factory):
            if name in self._found():
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            self._options[name] = dict(options or {})
            self._about[name] = about
            return factory

        return decorator

    def about(self, name):
        """What the part ``name`` is: the ``about`` it was registered with, else None (its docstring says it)."""
        self.get(name)
        return self._about[name]

    def options(self, name):
        """``{option: field}`` that the part ``name`` declared (:func:`pyro_vae.options.option`)."""
        self.get(name)
        return dict(self._options[name])

    def options_by_name(self):
        """``{option: {part: field}}`` over every registered part, options and parts in name order."""
        table = {}
        for part in self.names():
            for option, field in self._options[part].items():
                table.setdefault(option, {})[part] = field
        return {option: table[option] for option in sorted(table)}

    def get(self, name):
        try:
            return self._found()[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; expected one of: {', '.join(self.names())}"
            ) from None

    def names(self):
        return sorted(self._found())

    def __contains__(self, name):
        return name in self._found()
