"""The studies of the seeds, one module each (installed as ``pyro_vae.analyses``)."""
