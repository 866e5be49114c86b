# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The main job: fit, evaluate, report
#
# This page runs the README's main job, the command a new user types first, and follows its run
# directory through evaluation and the report:
#
# 1. `pyro-vae fit`: the catalogue VAE (8 latents, hidden widths 256 and 64, a Normal prior and guide, a
#    Bernoulli likelihood) on scikit-learn's bundled 8x8 digits, binarised afresh for every minibatch;
# 2. its run directory: config, versions, history, metrics, checkpoint, reconstructions and samples;
# 3. `pyro-vae evaluate`: the ELBO and the importance-sampled $\log p(x)$ with their Monte Carlo errors,
#    PSIS $\hat k$ per point, the per-latent table, and the calibration check of $q(z \mid x)$;
# 4. `pyro-vae report`: one self-contained HTML page of it all;
# 5. the same run from Python, with ArviZ.
#
# Each command below is run through `pyro_vae.cli.main`, which is what the `pyro-vae` command calls: the
# printed lines are what a terminal shows.  `--no-progress` keeps the progress bar out of this page.

# %%
# %matplotlib inline
import html
import json
import re
import shlex
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import Image

import pyro_vae
from pyro_vae._arviz import arviz
from pyro_vae.cli import main
from pyro_vae.inference.diagnostics import khat_data

az = arviz()  # ArviZ, imported without its banner about the 1.x refactor
torch.set_num_threads(1)  # a model this small runs fastest on one thread


def pyro_vae_cli(command):
    """Run ``pyro-vae COMMAND`` as the terminal would, and say that it ended well."""
    print(f"$ pyro-vae {command}")
    status = main(shlex.split(command))
    assert status == 0, f"pyro-vae {command} ended with status {status}"


shutil.rmtree("runs/digits", ignore_errors=True)  # so that this page can be run again

# %% [markdown]
# ## Fit
#
# The README's command, as it is written there.  The table it prints is the run's `metrics.json`: the
# final ELBO of each split in nats per data point, each with its Monte Carlo standard error
# (`+-`), and the training time.

# %%
pyro_vae_cli("fit --data digits --epochs 100 --batch-size 64 --lr 3e-3 --out runs/digits --no-progress")

# %% [markdown]
# ## The run directory
#
# Everything a run is: `config.json` (every option, the fit's and the model's, so the run can be
# rebuilt), `versions.json` (the libraries), `history.csv` (one row per epoch),
# `metrics.json`, `checkpoint.pt` (parameters, optimiser and random streams: `--resume` continues
# bit for bit) and the figures; `.lock` keeps a second fit out of the directory while this one runs.

# %%
run_dir = Path("runs/digits")
print(sorted(path.name for path in run_dir.iterdir()))
config = json.loads((run_dir / "config.json").read_text())
print({key: config[key] for key in ("objective", "particles", "epochs", "batch_size", "lr", "seed", "binarize")})

# %% [markdown]
# The training curve: the minibatch objective (the negative loss, nats per data point) and the
# validation ELBO after each epoch.

# %%
Image(run_dir / "figures" / "training_curve.png", width=640)

# %% [markdown]
# Reconstructions and samples: test images, their reconstructions through $q(z \mid x)$ and the
# decoder's mean, and new images decoded from prior draws.

# %%
Image(run_dir / "figures" / "reconstructions_samples.png", width=640)

# %% [markdown]
# ## Evaluate
#
# `evaluate` scores the test split.  Each number carries its estimator and its error: the ELBO from as
# many draws per point as an error of about 0.01 nats needs, $\log p(x)$ by importance sampling with
# $K = 1000$ draws of $q(z \mid x)$ (Burda et al. 2016), with the larger of its delta-method and
# replicate errors, and PSIS $\hat k$ per point (Vehtari et al. 2024), whose threshold says where that
# estimate cannot be trusted.  It writes `evaluation.json`, `posterior.nc` and figures into the run
# directory.

# %%
pyro_vae_cli("evaluate runs/digits")

# %%
evaluation = json.loads((run_dir / "evaluation.json").read_text())
print(f"log p(x) = {evaluation['log_likelihood']:.3f} +- {evaluation['log_likelihood_se']:.3f} nats per test point; "
      f"k-hat above {evaluation['khat_threshold']:.2f} for {evaluation['fraction_khat_above_threshold']:.1%} of the points")

# %% [markdown]
# Per latent: $\mathrm{Var}_x\, \mu_j$ and $E_x\, \sigma_j^2$, whose sum is the prior's variance when the KL
# term does its work (Asperti 2019, Section 4); a latent whose $\mathrm{Var}_x\, \mu_j$ is near 0 is
# unused.

# %%
print(sorted(path.name for path in (run_dir / "figures").iterdir()))
Image(run_dir / "figures" / "latent_variances.png", width=640)

# %% [markdown]
# ## Report
#
# `report` gathers a run (or several, or a study's directory) into one HTML page with no external files:
# the numbers with their errors and estimators, a flag beside any number that cannot be vouched for,
# and the figures.  Open `report.html` in a browser; its section headings are:

# %%
pyro_vae_cli("report runs/digits --out report.html")
page = Path("report.html").read_text()
for heading in re.findall(r"<h[23][^>]*>(.*?)</h[23]>", page):
    print(html.unescape(re.sub(r"<[^>]+>", "", heading)))

# %% [markdown]
# ## The same run from Python
#
# `load_run` rebuilds the fitted model from the directory (it runs no code the directory names: the
# catalogue VAE is rebuilt from its recorded options), and `posterior.nc` is ArviZ InferenceData.
# ArviZ's $\hat k$ plot takes the stored $\hat k$ through `khat_data`.

# %%
run = pyro_vae.load_run("runs/digits")
print(run.model.describe())
idata = az.from_netcdf(run_dir / "posterior.nc")
ax = az.plot_khat(khat_data(idata), show_hlines=True, figsize=(8, 3))
ax.set_title("PSIS k-hat of the stored draws of q(z|x), per test point (lines: 0, good_k, 1)")
plt.show()
