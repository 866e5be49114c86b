"""The GPU path, checked on a CPU: no tensor is made on torch's default device behind the caller's back.

Everything below runs with torch's default device set to ``meta`` (tensors without data) while the
model and data live on the CPU.  A tensor that the library makes without naming a device lands on
``meta``, and mixing it with the CPU tensors raises ("Tensor on device meta is not on the expected
device cpu"); reading it (``.item()``, ``.numpy()``) raises too.  On a GPU the same omission would put
a tensor on the CPU beside CUDA ones: this is the check that ``--device cuda`` keeps every tensor on
the device, run where no GPU is.
"""

import math

import pytest
import torch

from pyro_vae.data import load_data
from pyro_vae.inference import elbo_terms, evaluate, fit
from pyro_vae.inference.gaps import inference_gaps
from pyro_vae.inference.gradient_snr import gradient_snr, parameter_groups
from pyro_vae.inference.reference import compare_with_guide, nuts_posterior
from pyro_vae.inference.sample_quality import classifier_frechet_distance, train_feature_classifier
from pyro_vae.models import VAE
from pyro_vae.plots import plot_latent_traversals, plot_reconstructions_and_samples


@pytest.fixture
def data():
    torch.manual_seed(0)
    return torch.bernoulli(torch.full((48, 1, 6, 6), 0.3))


def test_meta_default_device_catches_a_tensor_made_without_a_device():
    on_cpu = torch.ones(3)
    with torch.device("meta"), pytest.raises(RuntimeError, match="meta"):
        on_cpu + torch.ones(3)


@pytest.mark.parametrize("objective", ["elbo", "meanfield", "iwae", "stl", "iwae-dreg"])
@pytest.mark.parametrize("prior, likelihood", [("normal", "bernoulli"), ("mixture", "gaussian"), ("cauchy", "cbernoulli")])
def test_fit_makes_every_tensor_where_its_data_are(data, objective, prior, likelihood):
    vae = VAE((1, 6, 6), latent_dim=3, hidden=(8,), prior=prior, likelihood=likelihood,
              **({"sigma_x": "per-sample"} if likelihood == "gaussian" else {}))
    with torch.device("meta"):
        result = fit(vae.model, vae.guide, data[:32], val=data[32:], objective=objective,
                     particles=2 if objective.startswith("iwae") else 1, epochs=1, batch_size=8,
                     dynamic_binarization=likelihood == "bernoulli", progress=False)
    assert math.isfinite(result.history[0]["train_objective"]) and math.isfinite(result.metrics["val_elbo"])
    assert all(p.device.type == "cpu" for p in vae.parameters())


def test_evaluation_diagnostics_and_figures_make_every_tensor_where_the_data_are(data, tmp_path):
    vae = VAE((1, 6, 6), latent_dim=3, hidden=(8,))
    labels = torch.arange(len(data)) % 3
    with torch.device("meta"):
        fit(vae.model, vae.guide, data, epochs=1, batch_size=16, progress=False)
        result = evaluate(vae.model, vae.guide, data, importance_samples=8, out=tmp_path / "evaluation", inference_points=4,
                          draws=20)
        assert result["num_datapoints"] == len(data)
        assert elbo_terms(vae.model, vae.guide, data)["elbo"] < 0
        gaps = inference_gaps(vae.model, vae.guide, data[:4], particles=8, steps=3)
        assert math.isfinite(gaps["total_gap"])
        gradient_snr(vae.model, vae.guide, data[:8], parameter_groups(vae), draws=4)
        reference = nuts_posterior(vae.model, data[:2], num_samples=10, warmup_steps=10, num_chains=2)
        compare_with_guide(reference, vae.model, vae.guide, data[:2], draws=30)
        classifier = train_feature_classifier(data, labels, epochs=1)
        assert classifier_frechet_distance(classifier, data[:24], data[24:]) >= 0
        plot_reconstructions_and_samples(vae, data, tmp_path / "reconstructions.png")
        plot_latent_traversals(vae, [0, 1], tmp_path / "traversals.png")
    assert (tmp_path / "traversals.png").stat().st_size > 0


def test_a_compare_task_builds_fits_and_reloads_its_module_where_the_data_are(data, tmp_path):
    from functools import partial

    from pyro_vae.analyses.compare import _fitted, fit_and_evaluate

    make_module = partial(VAE, (1, 6, 6), latent_dim=3, hidden=(8,))
    with torch.device("meta"):
        row = fit_and_evaluate(tmp_path, make_module, {"train": data[:32], "val": data[32:40], "test": data[40:]},
                               "iwae", 2, seed=0, eval_particles=4, dynamic_binarization=False,
                               fit_options=dict(epochs=1, batch_size=8, lr=1e-3))
        module = _fitted(make_module, tmp_path, "cpu")
    assert math.isfinite(row["log_likelihood"])
    assert all(p.device.type == "cpu" for p in module.parameters())


def test_data_sets_load_to_the_cpu_whatever_the_default_device():
    with torch.device("meta"):
        splits = load_data("digits", binarize="dynamic")
        synthetic = load_data("synthetic-patches")
    assert splits.train.device.type == synthetic.train.device.type == "cpu"
