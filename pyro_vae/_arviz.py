"""ArviZ, imported on first use and without its banner warning about the 1.x refactor."""

import warnings


def arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az


def khat_elpd(khat, good_k, draws):
    """Pareto k-hats (a DataArray over data points, or an array) as the ``az.ELPDData`` that ``az.plot_khat`` takes
    without a warning: with ``good_k``, the threshold drawn between 0 and 1, and the number of draws.  No elpd:
    leave-one-out over draws of q(z|x) estimates nothing."""
    import numpy as np
    import xarray

    if not isinstance(khat, xarray.DataArray):
        khat = xarray.DataArray(np.asarray(khat, dtype=float), dims=["datapoint"])
    return arviz().ELPDData(data=[draws, khat.size, good_k, khat.rename("pareto_k")],
                            index=["n_samples", "n_data_points", "good_k", "pareto_k"])
