"""Name -> factory tables, so every swappable part can be chosen by name in the CLI and in Python."""

from .errors import UnknownNameError


class Registry:
    """A table of named factories of one kind of part (priors, likelihoods, ...).

    ``registry.get(name)`` raises :class:`~pyro_vae.errors.UnknownNameError` listing the valid names,
    which is the one place that message is written.
    """

    def __init__(self, kind):
        self.kind = kind
        self._factories = {}

    def register(self, name):
        def decorator(factory):
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def get(self, name):
        try:
            return self._factories[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; expected one of: {', '.join(self.names())}"
            ) from None

    def names(self):
        return sorted(self._factories)

    def __contains__(self, name):
        return name in self._factories
