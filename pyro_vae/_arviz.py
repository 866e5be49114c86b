"""ArviZ, imported on first use and without its banner warning about the 1.x refactor."""

import warnings


def arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az
