"""The catalogue of model/guide pairs (installed as ``pyro_vae.models``)."""

from .vae import VAE

__all__ = ["VAE"]
