"""The HTML report as a reader gets it: structure (contents anchors, 4 significant figures, label
columns first, errors beside values, flags) from the HTML, and what is visible from a real headless
Chromium (Debian's ``chromium``): the page does not overflow sideways, wide tables scroll inside it with
their label column in view, every figure decodes, every contents link lands on a heading.

The browser test runs where a ``chromium`` binary is on the PATH; ``.ci/run`` installs one and sets
``PYRO_VAE_REQUIRE_BROWSER=1`` so that in CI a missing browser fails the test instead of skipping it."""

import html
import html.parser
import io
import json
import os
import shutil
import subprocess

import pytest

from pyro_vae.analyses.report import write_report
from pyro_vae.analyses.report_content import HIGH_KHAT, HIGH_KHAT_SHARE, NEGATIVE_GAP, NEGATIVE_KL, significant
from pyro_vae.summaries import label


def _png(width=4.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(width, 2))
    axes.plot([0, 1], [1, 0])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


@pytest.fixture
def directories(tmp_path):
    """A fit run (metrics, evaluation with a high k-hat share, per-latent table, two figures) and a study
    (a 30-column results.csv with a negative KL, a headline by setting)."""
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"epochs": 3}))
    (run / "metrics.json").write_text(json.dumps({"epochs": 3, "test_elbo": -23.30012345, "test_elbo_mc_se": 0.00613}))
    latents = {"site": "z", "moments": "mean/sd", "active": [True, False], "kl": [2.5, 0.001],
               "var_mu": [0.9, 0.0001], "mean_sigma2": [0.1, 0.99]}
    (run / "evaluation.json").write_text(json.dumps({
        "elbo": -23.3, "elbo_mc_se": 0.006, "kl": 4.123456, "kl_mc_se": 0.0, "log_likelihood": -22.81449,
        "log_likelihood_se": 0.0071, "fraction_khat_above_threshold": 0.35, "khat_threshold": 0.67,
        "particles": 1000, "num_datapoints": 179, "latents": latents}))
    for name in ("khat.png", "training_curve.png"):  # written in the wrong order on purpose
        (run / "figures" / name).write_bytes(_png())
    study = tmp_path / "study"
    (study / "figures").mkdir(parents=True)
    (study / "config.json").write_text(json.dumps({"analysis": "identifiability"}))
    (study / "headline.json").write_text(json.dumps({"latent_fraction_by_setting": {"beta=1": 0.123456789},
                                                     "seconds": 14.0666}))
    columns = ["setting", "aggregate_posterior_kl_to_prior", "amortisation_gap"] + [f"column_number_{i}" for i in range(27)]
    rows = [["beta=4, a long setting label", "-0.0087", "-0.0161"] + ["1.23456789"] * 27,
            ["beta=1", "0.5", "0.3"] + ["2"] * 27]
    (study / "results.csv").write_text("\n".join(",".join(f'"{cell}"' for cell in row) for row in [columns, *rows]) + "\n")
    (study / "figures" / "variance_split.png").write_bytes(_png(14))
    (study / "fits" / "a" / "figures").mkdir(parents=True)
    (study / "fits" / "a" / "figures" / "training_curve.png").write_bytes(_png())  # a fit of the study
    return [run, study]


class _Structure(html.parser.HTMLParser):
    """Ids, contents links, table header rows and cells of the page."""

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.headers, self.cells, self.flagged = [], [], [], [], []
        self._in, self._text = None, ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "a" and attrs.get("href", "").startswith("#"):
            self.links.append(attrs["href"][1:])
        if tag in ("th", "td"):
            self._in, self._text = (tag, "flag" in attrs.get("class", ""), attrs.get("title", "")), ""

    def handle_data(self, data):
        if self._in:
            self._text += data

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._in:
            kind, flagged, title = self._in
            (self.headers if kind == "th" else self.cells).append(self._text)
            if flagged:
                self.flagged.append((self._text, title))
            self._in = None


def test_page_structure_contents_numbers_and_flags(directories, tmp_path):
    page = write_report(directories, tmp_path / "report.html").read_text()
    parsed = _Structure()
    parsed.feed(page)
    assert len(parsed.ids) == len(set(parsed.ids))
    assert parsed.links and set(parsed.links) <= set(parsed.ids)  # every contents link lands
    # metrics.json: the error to 2 significant figures and the value to its decimal place, as the terminal prints them
    assert "-23.3001 ± 0.0061" in parsed.cells
    assert "-22.8145 ± 0.0071" in parsed.cells and "4.123 ± 0" in parsed.cells
    assert "1.235" in parsed.cells and not any("1.2345" in cell for cell in parsed.cells)
    assert parsed.headers.count("setting") == 2  # results.csv and the headline by setting, label first
    first_results_header = parsed.headers.index(label("aggregate_posterior_kl_to_prior"))  # its human label
    assert parsed.headers[first_results_header - 1] == "setting"
    flags = dict(parsed.flagged)
    assert flags["-0.0087"] == NEGATIVE_KL and flags["-0.0161"] == NEGATIVE_GAP and "0.3" not in flags
    assert 0.35 > HIGH_KHAT_SHARE and flags["-22.8145 ± 0.0071"] == HIGH_KHAT
    assert page.index("training_curve.png") < page.index("khat.png")  # reading order, not file order
    assert page.index("figures/variance_split.png") < page.index("fits/a/figures/training_curve.png")  # own ones first
    assert "Training curve:" in page and "Pareto k-hat" in page  # captions say what a figure shows
    assert page.count("<table>") == page.count('<div class="scroll"><table>')


def test_significant_figures():
    assert [significant(v) for v in (-23.30012345, 0.000123456, 123456.7, 3.0, 179, 12345, True)] == \
        ["-23.3", "0.0001235", "1.235e+05", "3", "179", "12,345", "yes"]


#: Run in the page once it has loaded; leaves what a reader would see in a <pre id="probe">.
PROBE = """<script>
window.addEventListener("load", () => {
  const width = document.documentElement.clientWidth;
  const inside = box => box.left >= -1 && box.right <= width + 1;
  const tables = [...document.querySelectorAll("div.scroll")].map(wrapper => {
    const label = wrapper.querySelector("tr:nth-child(2) > :first-child");
    return {scrolls: wrapper.scrollWidth > wrapper.clientWidth, label: label.innerText,
            label_in_view: inside(label.getBoundingClientRect())};
  });
  const probe = {
    page_width: document.documentElement.scrollWidth, viewport: width,
    images: [...document.images].map(image => ({decoded: image.naturalWidth > 0,
                                                in_view: inside(image.getBoundingClientRect())})),
    links: [...document.querySelectorAll("nav a")].map(a => document.getElementById(a.hash.slice(1)) !== null),
    flags_shown: [...document.querySelectorAll("td.flag")].map(cell => getComputedStyle(cell, "::after").content),
    tables,
    text: document.body.innerText,
  };
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(probe);
  document.body.appendChild(pre);
});
</script>"""


def _chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and not os.environ.get("PYRO_VAE_REQUIRE_BROWSER"):
        pytest.skip("no chromium on the PATH (apt-get install chromium); .ci/run installs it and requires this test")
    assert found, "PYRO_VAE_REQUIRE_BROWSER is set but no chromium binary is on the PATH"
    return found


def test_a_reader_in_chromium_sees_contents_tables_and_figures(directories, tmp_path):
    browser = _chromium()
    page = write_report(directories, tmp_path / "report.html")
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1024,768",
                          "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()],
                         capture_output=True, text=True, timeout=600).stdout
    start = dom.index('<pre id="probe">') + len('<pre id="probe">')
    probe = json.loads(html.unescape(dom[start:dom.index("</pre>", start)]))
    assert probe["page_width"] <= probe["viewport"]  # nothing pushes the page sideways
    assert probe["images"] and all(image["decoded"] and image["in_view"] for image in probe["images"])
    assert probe["links"] and all(probe["links"])
    assert probe["flags_shown"] and all("\u26a0" in content for content in probe["flags_shown"])
    wide = [t for t in probe["tables"] if t["scrolls"]]
    assert [t["label"] for t in wide] == ["beta=4, a long setting label"]  # the 30-column results.csv
    assert all(t["label_in_view"] for t in probe["tables"])
    text = probe["text"]
    assert "Contents" in text and "Evaluation on 179 points" in text and "Per latent" in text
    assert "negative KL estimate" in text and "more than 10% of points have k-hat above the threshold" in text
    assert text.index("Figure 1.") < text.index("Figure 2.")
