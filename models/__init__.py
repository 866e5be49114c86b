"""The catalogue of model/guide pairs (installed as ``pyro_vae.models``)."""

from .two_layer import TwoLayerVAE
from .vae import VAE

__all__ = ["TwoLayerVAE", "VAE"]
