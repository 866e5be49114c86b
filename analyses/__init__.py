"""The studies of the seeds, one module each (installed as ``pyro_vae.analyses``).

A study is a module of this package that declares ``NAME``, ``STUDY`` (a :class:`Study`: what it shows and its
minutes on 2 CPU cores), ``PRESETS`` (``quick`` for the tests, ``full`` for real use; instances of its options class,
:func:`~pyro_vae.analyses.options.study_presets`) and ``run(out, quick=False, data_dir=None, **overrides)``, which
writes ``config.json``, ``versions.json``, ``results.csv``, ``headline.json`` and figures.  :data:`ANALYSES` finds the
studies here the first time it is asked (:func:`_discover`), so a new study is its one module: the CLI's
``pyro-vae analyze NAME`` with its flags and the docs' command-line reference follow from it.
"""

if __name__ != "pyro_vae.analyses":  # imported from the repository root as a package of its own
    raise ImportError(f"this folder is the package pyro_vae.analyses; import it as pyro_vae.analyses (as {__name__!r} it "
                      "would be a second copy, with registries of its own)")

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass

from pyro_vae.registry import Registry


@dataclass(frozen=True)
class Study:
    """What a study shows and its minutes on 2 CPU cores (``full_minutes_estimated``: the full preset's are an estimate,
    not a measured run); ``module`` is filled in when the study is found (:func:`_discover`)."""

    summary: str
    quick_minutes: float
    full_minutes: float
    full_minutes_estimated: bool = False
    module: str = ""

    def load(self):
        """The study's module, with its ``PRESETS`` and ``run``."""
        return importlib.import_module(self.module)


def _discover(registry):
    """Register every module of this package that declares ``STUDY``, under its ``NAME``."""
    for found in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{found.name}")
        if isinstance(getattr(module, "STUDY", None), Study):
            registry.register(module.NAME)(dataclasses.replace(module.STUDY, module=module.__name__))


#: The studies by name, found in this package when first asked.
ANALYSES = Registry("analysis", discover=_discover)

__all__ = ["ANALYSES", "Study"]
