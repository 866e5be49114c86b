r"""The data plate of a model/guide pair, found whatever its name, and which sites are local to it.

Every estimator here needs to know which ``pyro.plate`` indexes the rows of ``x``: ``fit`` scales
the sites inside it by N/B for a minibatch, the importance-weighted bound takes its log-mean-exp
per data point along it, and evaluation counts each site outside it (a *global* latent: a
hierarchical prior, a learned global scale) once per data set rather than once per batch.

The data plate is the plate that encloses every observed site of the model and whose size is the
leading dimension of ``x`` (the minibatch's size; a plate written without a size, ``pyro.plate("data")``,
has the observed site's extent along its dim); ``data_plate=`` names it instead.  A model that
subsamples that plate itself (``pyro.plate(name, N, subsample=...)``) is refused: ``fit`` draws the
minibatches, and two subsamplers would compose to the wrong scale.  The estimators themselves, run in
Pyro's ``SVI`` as Pyro's own tests run them, take such a plate as the data plate (its full size is the rows
of ``x``) and are unbiased for the full data's loss and gradient (``tests/test_pyro_gradients.py``).
"""

from pyro import poutine

from pyro_vae.errors import ConfigError

from .traces import random_state_kept, trace_pair

#: Pyro's plate of vectorised particles, which no model's data plate can be.
PARTICLE_PLATE = "num_particles_vectorized"


def _plates(site):
    return [frame for frame in site["cond_indep_stack"] if frame.vectorized and frame.name != PARTICLE_PLATE]


def data_plate_of(model_trace, batch_size, name=None):
    """The name of the data plate in a traced model run on ``batch_size`` rows (see the module doc).

    :param str name: the plate to use (checked to enclose the observed sites); None finds it.
    :raises ConfigError: one line listing the plates seen, when none or several qualify.
    """
    return _data_frame(model_trace, batch_size, name).name


def _data_frame(model_trace, batch_size, name):
    observed = [site for site in model_trace.nodes.values() if site["type"] == "sample" and site["is_observed"]]
    seen = {frame.name: frame for site in model_trace.nodes.values() if site["type"] == "sample" for frame in _plates(site)}
    listed = ", ".join(f"{f.name!r} (size {f.size})" for f in seen.values()) or "none"
    if not observed:
        raise ConfigError("the model has no observed site (pyro.sample(..., obs=x)); there is nothing to fit")
    enclosing = [frame for frame in _plates(observed[0])
                 if all(frame.name in {f.name for f in _plates(site)} for site in observed[1:])]
    if name is not None:
        chosen = [frame for frame in enclosing if frame.name == name]
        if not chosen:
            raise ConfigError(f"data_plate {name!r} does not enclose every observed site of the model; plates seen: {listed}")
    else:
        # a plate over the rows, or over all of them and subsampled in the model (pyro.plate("data", len(x), subsample=))
        chosen = [frame for frame in enclosing if batch_size in (plate_rows(frame, observed[0]), frame.full_size)]
        if len(chosen) > 1:  # e.g. a feature plate as wide as the batch: keep the one indexing the rows of x
            chosen = [frame for frame in chosen if _indexes_rows(frame, observed[0])] or chosen
        if len(chosen) != 1:
            what = "no plate" if not chosen else "several plates"
            raise ConfigError(
                f"cannot tell the data plate: {what} of size {batch_size} (the rows of x) enclose every observed site; "
                f"plates seen: {listed}; name it with data_plate=... (--data-plate)"
            )
    return chosen[0]


def plate_rows(frame, site):
    """The plate's size; for a plate written without one (size -1), the site's extent along its dim."""
    if frame.size != -1:
        return frame.size
    shape = site["fn"].batch_shape
    return shape[frame.dim] if len(shape) >= -frame.dim else 1


def _indexes_rows(frame, site):
    value = site["value"]
    return value.dim() - site["fn"].event_dim + frame.dim == 0


def find_data_plate(model, guide, x, name=None):
    """:func:`data_plate_of` from one traced pass of the pair on ``x`` (random streams left as they were).

    :raises ConfigError: also when the model subsamples the plate itself (module doc), or when model and
        guide do not sample the same latent sites (:func:`check_sites_match`).
    """
    with random_state_kept(x.device), poutine.block():
        model_trace, guide_trace = trace_pair(model, guide, x)
    check_sites_match(model_trace, guide_trace)
    frame = _data_frame(model_trace, len(x), name)
    if frame.full_size not in (None, frame.size):
        raise ConfigError(
            f"the model subsamples plate {frame.name!r} itself ({frame.size} of {frame.full_size}); pyro-vae draws the "
            f"minibatches: give the plate the size of x, pyro.plate({frame.name!r}, len(x))"
        )
    return frame.name


def _latents(trace, skip):
    return [name for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"] and not site["infer"].get(skip)]


def check_sites_match(model_trace, guide_trace):
    """Every latent site of the model (but those it sums out by enumeration) is sampled by the guide, and
    the guide samples no latent site the model lacks (but those marked auxiliary), as Pyro's ELBOs assume."""
    guide_sites = _latents(guide_trace, "is_auxiliary")
    missing = [name for name in _latents(model_trace, "enumerate") if name not in guide_trace.nodes]
    if missing:
        raise ConfigError(f"the guide has no site {missing[0]!r}, which the model samples; give the guide a site of that "
                          f"name (its sites: {guide_sites}), or mark the model's site infer={{'enumerate': 'parallel'}} "
                          "to sum it out")
    extra = [name for name in guide_sites if name not in model_trace.nodes]
    if extra:
        raise ConfigError(f"the guide samples {extra[0]!r}, which the model lacks; rename it to a model site, or mark it "
                          "infer={'is_auxiliary': True}")


def is_local(site, data_plate):
    """Whether a traced sample site lies inside the data plate."""
    return any(frame.name == data_plate for frame in site["cond_indep_stack"])


def global_latents(model_trace, guide_trace, data_plate):
    """Names of the latent sites (sampled by the guide) outside the data plate, in the guide's order."""
    return [name for name, site in guide_trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"] and not is_local(site, data_plate)
            and name in model_trace.nodes]


def local_pair(model, guide, x, data_plate):
    """The pair with its global latents fixed to one draw from the guide and hidden from every trace.

    What remains is local to the data points, so per-point estimators (importance weights, PSIS,
    per-latent statistics) apply: their results are *conditional on* that draw.

    :returns: ``(model, guide, values)``, ``values`` the ``{site: tensor}`` draw (empty, and the pair
        unchanged, when there is no global latent).
    """
    with poutine.block():
        model_trace, guide_trace = trace_pair(model, guide, x)
    names = global_latents(model_trace, guide_trace, data_plate)
    if not names:
        return model, guide, {}
    values = {name: guide_trace.nodes[name]["value"].detach() for name in names}

    def fixed(fn):
        return poutine.block(poutine.condition(fn, data=values), hide=names)

    return fixed(model), fixed(guide), values
