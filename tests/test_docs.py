"""The documentation builds with warnings as errors, and its tutorials run, with outputs, in time.

One ``sphinx-build -W --keep-going -b html docs OUT`` (about 2 minutes on 2 CPU cores, most of it
executing the five tutorials) into a temporary folder; every test reads its output.

The execution time of each tutorial is read from the page ``execution.html``, which holds myst-nb's
``nb-exec-table`` directive: myst-nb fills that table from the execution data it records for each
notebook during this build (``runtime``, ``succeeded``), so the test reads the number myst-nb measured,
through a documented directive, without unpickling Sphinx's environment (whose layout is internal).
"""

import html
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted(path.stem for path in (ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
#: Per tutorial, text its executed outputs must show (a table header or a label it prints).
PRINTED = {
    "00_the_main_job": ("$ pyro-vae fit --data digits --epochs 100", "log p(x)", "Evaluation on 179 points"),
    "01_your_own_pair": ("log p(x) per point (nats)", "refused:", "closed-form pPCA"),
    "02_comparing_objectives": ("IWAE bound K=5", "iwae-dreg:100", "pPCA maximum likelihood"),
    "03_diagnosing_with_arviz": ("k-hat", "energy distance q vs NUTS", "Inference data with groups"),
    "04_collapse_and_identifiability": ("Var(mu_j), sorted", "pPCA exact", "latent"),
}
BUILD_TIMEOUT = 1800  # a hang guard, not a speed limit: the suite must pass under load
#: Every module of the API reference, by the page that documents it.
MODULES = {
    "core": ["pyro_vae." + m for m in ("contract", "factories", "priors", "guides", "likelihoods", "networks", "kl", "data",
                                        "checks", "files", "rundir", "sweep", "plots", "summaries", "errors", "usercode", "launch", "options")],
    "models": ["pyro_vae.models." + m for m in ("vae", "two_layer", "ppca", "gmm")],
    "inference": ["pyro_vae.inference." + m for m in (
        "fit", "options", "trainer", "objectives", "iwae", "mean_field", "path_gradients", "estimators", "latents", "evaluate",
        "diagnostics", "model_comparison", "gradient_snr", "gaps", "refine", "reference", "sample_quality", "plates", "handlers",
        "traces", "runs", "distributed")],
    "analyses": ["pyro_vae.analyses." + m for m in (
        "identifiability", "beta_sweep", "collapse", "kl_law", "latent_sweep", "noise_injection", "priors", "sampling",
        "sigma_sweep", "two_stage", "compare", "guides", "sample_metrics", "setting_sweep", "report", "report_content")],
}


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs") / "html"
    started = time.perf_counter()
    process = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(ROOT / "docs"), str(out)],
                             cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    seconds = time.perf_counter() - started
    print(f"sphinx-build took {seconds:.0f} s")
    return {"out": out, "returncode": process.returncode, "log": process.stdout + process.stderr, "seconds": seconds}


def _page(build, name):
    path = build["out"] / f"{name}.html"
    assert path.is_file(), f"{path} was not built"
    return path.read_text(encoding="utf-8")


class _Outputs(HTMLParser):
    """The text and the image sources inside a notebook page's cell outputs (``div.cell_output``)."""

    def __init__(self):
        super().__init__()
        self.depth, self.inside, self.text, self.images = 0, None, [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div":
            self.depth += 1
            if self.inside is None and "cell_output" in (attrs.get("class") or "").split():
                self.inside = self.depth
        if tag == "img" and self.inside is not None:
            self.images.append(attrs.get("src", ""))

    def handle_endtag(self, tag):
        if tag == "div":
            if self.inside == self.depth:
                self.inside = None
            self.depth -= 1

    def handle_data(self, data):
        if self.inside is not None:
            self.text.append(data)


def _outputs(page):
    parser = _Outputs()
    parser.feed(page)
    return "".join(parser.text), parser.images


def test_the_build_passes_with_no_warnings(build):
    log = build["log"]
    assert build["returncode"] == 0, log[-5000:]
    # the one line that is no Sphinx warning: each notebook kernel's notice about its local TCP transport
    problems = [line for line in log.splitlines()
                if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line) and not line.startswith("[IPKernelApp] WARNING | Kernel is running over TCP")]
    assert not problems, problems
    assert build["seconds"] < BUILD_TIMEOUT


def test_every_tutorial_has_its_expected_outputs_listed():
    assert TUTORIALS == sorted(PRINTED)


@pytest.mark.parametrize("name", sorted(PRINTED))
def test_each_tutorial_page_shows_its_executed_outputs(build, name):
    page = _page(build, f"tutorials/{name}")
    text, images = _outputs(page)
    assert images, f"{name}: no figure among the cell outputs"
    for src in images:
        image = (build["out"] / "tutorials" / src).resolve()
        assert src.endswith(".png") and image.is_file() and image.stat().st_size > 5000, f"{name}: {src} is no embedded figure"
    text = html.unescape(text)
    for expected in PRINTED[name]:
        assert expected in text, f"{name}: the outputs do not show {expected!r}"
    numbers = re.findall(r"-?\d+\.\d{2,}", text)
    assert len(numbers) >= 10, f"{name}: the outputs print only {len(numbers)} numbers"
    assert "Traceback" not in text, f"{name}: an output shows a traceback"
    warned = re.findall(r"\w+Warning: .{0,80}", text)
    assert not warned, f"{name}: an output shows a warning: {warned}"


def _execution_table(build):
    """``{document: (seconds, status)}`` from the nb-exec-table of execution.html."""
    page = _page(build, "execution")
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page, flags=re.S):
        cells = [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)]
        if len(cells) == 5:
            document, _, method, runtime, status = cells
            rows[document] = (float(runtime), method, status)
    return rows


def test_each_tutorial_was_executed_by_this_build(build):
    """Every tutorial ran afresh and succeeded; its seconds are printed, not asserted: speed is measured in
    benchmarks, and a test that races a clock it does not control can fail under load."""
    table = _execution_table(build)
    assert sorted(table) == [f"tutorials/{name}" for name in sorted(PRINTED)], table
    for document, (seconds, method, status) in table.items():
        print(f"{document}: {seconds:.1f} s")
        assert method == "force" and status == "✅" and seconds > 0, (document, method, status)


def test_the_api_pages_document_every_module_and_the_key_objects(build):
    pages = {name: _page(build, f"api/{name}") for name in MODULES}
    for name, page in pages.items():  # Furo drew a red error box over a page with a contents directive
        assert "table of contents in Furo-based documentation is unnecessary" not in page, name
    for name, modules in MODULES.items():
        for module in modules:
            assert f'id="module-{module}"' in pages[name], f"{module} is missing from api/{name}.html"
    for page, target in (("inference", "pyro_vae.inference.fit.fit"), ("inference", "pyro_vae.inference.evaluate.evaluate"),
                         ("inference", "pyro_vae.inference.model_comparison.compare_runs"), ("models", "pyro_vae.models.vae.VAE"),
                         ("models", "pyro_vae.models.ppca.PPCA"), ("core", "pyro_vae.data.load_data")):
        assert f'id="{target}"' in pages[page], f"{target} is not documented in api/{page}.html"
    fit_section = pages["inference"].split('id="pyro_vae.inference.fit.fit"', 1)[1][:20000]
    assert "Parameters" in fit_section and "objective" in fit_section  # :param: fields rendered as a field list


def test_the_cli_and_parts_references_are_written_from_the_parser_and_registries_and_there_is_an_install_page(build):
    from pyro_vae.cli import build_parser

    page = html.unescape(_page(build, "cli"))
    commands = build_parser()._subparsers._group_actions[0].choices
    studies = commands["analyze"]._subparsers._group_actions[0].choices  # a parser per study
    for name, command in [*commands.items(), *((f"analyze {study}", parser) for study, parser in studies.items())]:
        assert f"pyro-vae {name}" in page
        text = re.sub(r"<[^>]+>", "", page)  # a study's flags are looked for in its own --help
        section = text.split(f"usage: pyro-vae {name} ", 1)[1].split("usage: pyro-vae", 1)[0] if " " in name else page
        for action in command._actions:  # every flag of every command and study, as the parser has it today
            for flag in action.option_strings:
                if action.help != "==SUPPRESS==":
                    assert flag in section, (name, flag)
    from pyro_vae.guides import GUIDES
    from pyro_vae.inference.objectives import OBJECTIVES
    from pyro_vae.priors import PRIORS

    parts = html.unescape(re.sub(r"<[^>]+>", "", _page(build, "parts")))  # written from the registries
    for registry in (PRIORS, GUIDES, OBJECTIVES):
        for name in registry.names():
            assert name in parts, (registry.kind, name)
    assert "--guide-rank (2)" in parts and "--prior-components (50)" in parts and "path derivative only" in parts
    assert "Roeder et al. 2017" in parts and OBJECTIVES.about("enum").replace("'", "\u2019") in parts  # Sphinx curls the apostrophe
    install = html.unescape(re.sub(r"<[^>]+>", "", _page(build, "install")))  # the text, without the highlighting's spans
    assert "pip install -e" in install and "pyro-vae --version" in install


def test_the_pages_render_math_as_mathml_with_no_script_and_no_network(build):
    """Formulas are MathML written at build time (conf.py): no MathJax, nothing fetched, no TeX left in the HTML."""
    for name in ("api/models", "api/inference", "api/core", *(f"tutorials/{t}" for t in TUTORIALS)):
        page = _page(build, name)
        scripts = re.findall(r"<script[^>]*>", page)
        assert not [s for s in scripts if "mathjax" in s.lower() or "//" in s], f"{name}.html loads a script for math: {scripts}"
        assert len(re.findall(r"<math[ >]", page)) >= 10, f"{name}.html holds few MathML formulas"
        assert not re.search(r"\\\(|\\\[|\\mid|\\frac|\\mathcal", page), f"{name}.html shows raw TeX"
        assert ":math:" not in page and ".. math::" not in page, f"{name}.html shows unrendered reST math"


def test_a_reader_in_chromium_offline_sees_drawn_formulas_and_no_text_cut_at_1280_px(build):
    """Headless Chromium with every network request refused: each formula is drawn (a MathML box of some size, no
    raw TeX in the text), and no code or output block is wider than its column (they wrap: docs/_static/reading.css)."""
    import json
    import os
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None and not os.environ.get("PYRO_VAE_REQUIRE_BROWSER"):
        pytest.skip("no chromium on the PATH (apt-get install chromium); .ci/run installs it and requires this test")
    assert browser, "PYRO_VAE_REQUIRE_BROWSER is set but no chromium binary is on the PATH"
    probe = """<script>window.addEventListener("load", () => {
      const formulas = [...document.querySelectorAll("article math")].map(m => m.getBoundingClientRect().width);
      const blocks = [...document.querySelectorAll("div.highlight pre, div.cell_output pre, div.table-wrapper")];
      const cut = blocks.filter(b => b.scrollWidth > b.clientWidth + 1).map(b => b.textContent.slice(0, 60));
      const pre = document.createElement("pre"); pre.id = "probe";
      pre.textContent = JSON.stringify({formulas, cut, text: document.body.innerText});
      document.body.appendChild(pre);
    });</script>"""
    for name, least_formulas in (("api/models", 20), ("tutorials/03_diagnosing_with_arviz", 20), ("cli", 0),
                                 ("parts", 5)):
        page = build["out"] / f"{name}.html"
        probed = page.with_name(page.stem + "_probed.html")
        probed.write_text(page.read_text(encoding="utf-8").replace("</body>", probe + "</body>"), encoding="utf-8")
        dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                              "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--virtual-time-budget=10000",
                              "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=600).stdout
        start = dom.index('<pre id="probe">') + len('<pre id="probe">')
        found = json.loads(html.unescape(dom[start:dom.index("</pre>", start)]))
        assert len(found["formulas"]) >= least_formulas and all(width > 0 for width in found["formulas"]), name
        assert not re.search(r"\\(mid|frac|mathcal|hat|log)\b|\\\(", found["text"]), name
        assert found["cut"] == [], (name, found["cut"])


def test_every_public_name_has_a_page_of_its_own_under_the_name_users_call(build):
    """One page per name of pyro_vae.__all__ (autosummary), the functions and classes; fit's shows its Examples and
    every option."""
    import pyro_vae
    from pyro_vae.inference.options import FitOptions

    public = _page(build, "api/public")
    for name in pyro_vae.__all__:
        if not (isinstance(getattr(pyro_vae, name), type) and issubclass(getattr(pyro_vae, name), Exception)):
            page = _page(build, f"api/generated/pyro_vae.{name}")
            assert f'id="pyro_vae.{name}"' in page and f"generated/pyro_vae.{name}.html" in public, name
    fit = html.unescape(re.sub(r"<[^>]+>", "", _page(build, "api/generated/pyro_vae.fit")))
    assert "Examples" in fit and all(name in fit for name in FitOptions.names())
