"""The catalogue of model/guide pairs (installed as ``pyro_vae.models``)."""

if __name__ != "pyro_vae.models":  # imported from the repository root as a package of its own
    raise ImportError(f"this folder is the package pyro_vae.models; import it as pyro_vae.models (as {__name__!r} it "
                      "would be a second copy, with registries of its own)")

from .two_layer import TwoLayerVAE
from .vae import VAE

__all__ = ["TwoLayerVAE", "VAE"]
