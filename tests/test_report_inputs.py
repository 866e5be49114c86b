"""``pyro-vae report`` on hostile or damaged inputs: it embeds only regular files inside the given
directories, and every damaged file or bad ``--out`` is one error line, never a traceback."""

import base64
import io
import json
import os

import pytest

from pyro_vae.cli import main
from pyro_vae.errors import RunDirError
from pyro_vae.analyses.report import write_report
from pyro_vae.summaries import label

SECRET = "TOP-SECRET-MARKER-7f3a"


def _png_bytes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(1, 1))
    axes.plot([0, 1], [1, 0])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _run_dir(tmp_path):
    """A small fake fit directory: config.json, metrics.json, one real figure."""
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"latent_dim": 2}))
    (run / "metrics.json").write_text(json.dumps({"test_elbo": -123.5}))
    (run / "figures" / "real.png").write_bytes(_png_bytes())
    return run


def _cli_error(capsys, argv):
    """Run the CLI, assert it failed with exit code 2 and one error line; return that line."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("pyro-vae: error: "), err
    return err


def test_symlinks_and_outside_files_are_not_embedded(tmp_path):
    run = _run_dir(tmp_path)
    outside = tmp_path / "outside"
    (outside / "figs").mkdir(parents=True)
    (outside / "secret.png").write_bytes(_png_bytes() + SECRET.encode())
    (outside / "versions.txt").write_text(json.dumps({"torch": SECRET}))
    (outside / "figs" / "deep.png").write_bytes(_png_bytes() + b"DEEP" + SECRET.encode())
    os.symlink(outside / "secret.png", run / "figures" / "leak.png")
    os.symlink(outside / "versions.txt", run / "versions.json")
    os.symlink(outside / "figs", run / "linked_figures")  # a symlinked sub-directory

    page = write_report([run], tmp_path / "page.html")
    text = page.read_text()
    assert SECRET not in text
    for leaked in ("secret.png", "versions.txt", "figs/deep.png"):
        encoded = base64.b64encode((outside / leaked).read_bytes()).decode()
        assert encoded not in text
    assert base64.b64encode((run / "figures" / "real.png").read_bytes()).decode() in text
    assert text.count('src="data:image/png;base64,') == 1
    assert "Skipped (not embedded)" in text
    assert "figures/leak.png: a symbolic link" in text and "versions.json: a symbolic link" in text
    assert "linked_figures: a symbolic link to a directory (not followed)" in text
    assert label("test_elbo") in text  # the regular files are still shown

    # the CLI writes the same page
    assert main(["report", str(run), "--out", str(tmp_path / "cli.html")]) == 0
    assert SECRET not in (tmp_path / "cli.html").read_text()


def test_symlinked_config_is_skipped_and_named(tmp_path):
    run = _run_dir(tmp_path)
    (tmp_path / "other.json").write_text(json.dumps({"analysis": SECRET}))
    (run / "config.json").unlink()
    os.symlink(tmp_path / "other.json", run / "config.json")
    text = write_report([run], tmp_path / "page.html").read_text()
    assert SECRET not in text and "config.json: a symbolic link" in text
    assert "<h2>fit" in text  # title from metrics.json, not from the outside config


def test_directory_of_only_symlinks_is_one_line_naming_the_skips(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "secret.png").write_bytes(_png_bytes())
    os.symlink(tmp_path / "secret.png", run / "leak.png")
    with pytest.raises(RunDirError, match="holds no analysis or run outputs.*leak.png: a symbolic link"):
        write_report([run], tmp_path / "page.html")
    assert "leak.png: a symbolic link" in _cli_error(capsys, ["report", str(run), "--out", str(tmp_path / "p.html")])


@pytest.mark.parametrize("content, expected", [
    (b"{not json", "config.json cannot be read"),
    (b"[1, 2, 3]", "config.json must hold a JSON object, found list"),
    (b"\xff\xfe\x00garbage", "config.json cannot be read"),
])
def test_corrupt_config_is_one_line(tmp_path, capsys, content, expected):
    run = _run_dir(tmp_path)
    (run / "config.json").write_bytes(content)
    with pytest.raises(RunDirError, match=expected):
        write_report([run], tmp_path / "page.html")
    assert expected in _cli_error(capsys, ["report", str(run), "--out", str(tmp_path / "p.html")])
    assert not (tmp_path / "page.html").exists() and not (tmp_path / "p.html").exists()


def test_binary_results_csv_is_one_line(tmp_path, capsys):
    run = _run_dir(tmp_path)
    (run / "results.csv").write_bytes(bytes(range(256)) * 4)  # invalid UTF-8 from byte 0x80
    with pytest.raises(RunDirError, match=r"results.csv is not UTF-8 text \(invalid byte at offset 128\)"):
        write_report([run], tmp_path / "page.html")
    err = _cli_error(capsys, ["report", str(run), "--out", str(tmp_path / "p.html")])
    assert "results.csv is not UTF-8 text" in err


@pytest.mark.parametrize("row, cells", [("1,2,3,4", 4), ("1", 1)])
def test_ragged_results_csv_is_one_line(tmp_path, capsys, row, cells):
    run = _run_dir(tmp_path)
    (run / "results.csv").write_text(f"setting,elbo\nfirst,1.5\n{row}\n")
    message = f"results.csv row 3 has {cells} cells but the header has 2"
    with pytest.raises(RunDirError, match=message):
        write_report([run], tmp_path / "page.html")
    assert message in _cli_error(capsys, ["report", str(run), "--out", str(tmp_path / "p.html")])


def test_well_formed_results_csv_is_a_table_with_quoted_cells(tmp_path):
    run = _run_dir(tmp_path)
    (run / "results.csv").write_text('setting,elbo\n"beta=4, sigma_x learned",-98.25\n')
    text = write_report([run], tmp_path / "page.html").read_text()
    assert f"<th>setting</th><th>{label('elbo')}</th>" in text
    assert "<td>beta=4, sigma_x learned</td><td class=\"number\">-98.25</td>" in text


@pytest.mark.parametrize("name", ["headline.json", "metrics.json"])
def test_corrupt_headline_or_metrics_is_shown_as_text_with_a_note(tmp_path, name):
    run = _run_dir(tmp_path)
    (run / name).write_text('{"test_elbo": -1.0, <truncated')
    text = write_report([run], tmp_path / "page.html").read_text()
    assert f"{name} is not valid JSON" in text
    assert "&lt;truncated" in text  # shown, escaped


@pytest.mark.parametrize("name", ["headline.json", "metrics.json", "versions.json"])
def test_binary_headline_metrics_or_versions_is_one_line(tmp_path, capsys, name):
    run = _run_dir(tmp_path)
    (run / name).write_bytes(b"\x89PNG\r\n\x1a\n\xff\xff")
    assert f"{name} is not UTF-8 text" in _cli_error(capsys, ["report", str(run), "--out", str(tmp_path / "p.html")])


def test_out_that_is_a_directory_is_one_line(tmp_path, capsys):
    run = _run_dir(tmp_path)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(RunDirError, match="is a directory; expected an HTML file path"):
        write_report([run], folder)
    err = _cli_error(capsys, ["report", str(run), "--out", str(folder)])
    assert err == f"pyro-vae: error: --out {folder} is a directory; expected an HTML file path\n"
    assert list(folder.iterdir()) == []  # nothing written into it, no temporary file left


def test_a_nan_monte_carlo_error_is_shown_as_unknown_and_flagged_not_as_zero():
    """Issue 35, item 7: an error that is NaN (one draw) printed as "± 0", which reads as exact."""
    from pyro_vae.analyses.report_content import NO_ERROR, table

    shown = table("fit", ["test_elbo", "test_elbo_mc_se", "kl", "kl_mc_se"], [[-101.5, float("nan"), 3.25, 0.0]])
    elbo, kl = shown.rows[0]
    assert elbo.text == "-101.5 ± ?" and elbo.flag == NO_ERROR
    assert kl.text == "3.25 ± 0" and not kl.flag  # a closed form's error is 0, and says so


def test_every_figure_a_study_or_command_writes_has_a_caption_that_says_what_it_shows():
    """Each figure name written anywhere in the package (a literal ``"name.png"``, or an f-string's fixed prefix) has a
    caption in the report (FIGURES, FIGURES_BY_PREFIX), not its file name alone."""
    import re
    from pathlib import Path

    from pyro_vae.analyses.report_content import figure_caption

    root = Path(__file__).resolve().parents[1]
    sources = "".join(path.read_text() for folder in ("analyses", "inference", "pyro_vae")
                      for path in (root / folder).glob("*.py"))
    names = set(re.findall(r'"([a-z_]+\.png)"', sources))
    names |= {prefix + "x.png" for prefix in re.findall(r'f"([a-z_]+_)\{[^"]*\.png"', sources)}
    assert len(names) >= 20
    assert [name for name in sorted(names) if not figure_caption(name)] == []
