r"""The contract of a model/guide pair: what ``fit``, ``evaluate``, ``compare`` and the studies need.

**Required.** Two Pyro callables taking the data, ``model(x)`` and ``guide(x)``, where ``x`` is a
tensor of ``(n, ...)`` rows.  The sites that belong to one row (local latents, the observations) sit
inside one ``pyro.plate`` of size ``len(x)``, the *data plate*, under any name: it is found as the
plate that encloses every observed site and whose size is ``len(x)``, or named with
``data_plate=`` (``--data-plate``).  Sites outside it are *global* (a hierarchical prior, a learned
noise scale); ``fit`` leaves them unscaled and evaluation counts their KL once per data set.
Parameters are ``pyro.param`` sites, or those of the ``nn.Module`` that owns the pair (``module=``,
or the owner of a bound method ``module.model``).  Nothing of ours is subclassed.

**For the CLI and** ``load_run``, a *factory*: a callable ``factory(**kwargs)`` returning an object
with ``model`` and ``guide`` attributes (an ``nn.Module``, a namespace, or a Python module of
functions), named ``path/to/file.py:factory`` or ``package.module:factory``
(:mod:`pyro_vae.factories`).  A factory with an ``event_shape`` parameter gets the data's.

**Optional capabilities** of the object owning the pair, each unlocking something (:data:`OPTIONAL`);
``evaluate`` and ``compare`` print what ran and what was skipped, with the reason.
"""

from typing import Protocol, runtime_checkable

from torch import nn


@runtime_checkable
class Pair(Protocol):
    """An object carrying a model/guide pair (the required part of the contract)."""

    def model(self, x):
        ...

    def guide(self, x):
        ...


#: Optional attribute of a pair's owner -> what it unlocks.
OPTIONAL = {
    "check_data": "check_data(x) raises DataError for data outside the model's support, before anything runs (fit)",
    "event_shape": "the shape of one data point; figures of images need a 3-d (channels, height, width) shape",
    "generate": "generate(n, mode, z=None): samples, generation modes and collapsed-latent generation (evaluate)",
    "prior": "prior(): the distribution of z, for collapsed-latent generation (evaluate)",
    "reconstruct": "reconstruct(x): E[x | z = location of q(z|x)], with generate and an image event_shape: the "
                   "reconstructions-and-samples figure (fit, evaluate)",
    "encoder": "with decoder: nn.Modules whose parameters give gradient SNR per network (compare); else one group 'all'",
    "decoder": "with encoder: see encoder",
    "describe": "describe(): one line naming the model, in figure titles (else the owner's or the model's name)",
}


def owner_module(model, module=None):
    """The ``nn.Module`` owning a pair: ``module`` if given, else the owner of a bound ``model``, else None."""
    if module is not None:
        return module
    owner = getattr(model, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def has(owner, capability):
    """Whether the pair's owner offers an optional capability of :data:`OPTIONAL`."""
    if capability not in OPTIONAL:
        raise KeyError(f"unknown capability {capability!r}; expected one of: {', '.join(OPTIONAL)}")
    return owner is not None and getattr(owner, capability, None) is not None


def missing(owner, *capabilities):
    """The reason a diagnostic needing ``capabilities`` is skipped, or None when the owner has them all."""
    lacking = [name for name in capabilities if not has(owner, name)]
    if not lacking:
        return None
    whose = "the pair has no owning object" if owner is None else f"{type(owner).__name__} has no"
    return f"{whose} {', '.join(lacking)}" if owner is not None else whose


def describe_pair(model, module=None):
    """One line naming the pair for figure titles: the owner's ``describe()``, else its class name, else the
    model function's name."""
    owner = owner_module(model, module)
    if has(owner, "describe"):
        return owner.describe()
    if owner is not None:
        return type(owner).__name__
    return getattr(model, "__qualname__", type(model).__name__)
