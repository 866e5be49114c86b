"""What the terminal prints of a study's headline: numbers aligned, nested results as tables, texts as notes."""

from pyro_vae.summaries import format_headline


def test_a_headline_prints_its_rows_as_aligned_tables_and_its_texts_as_notes():
    headline = {
        "smallest_beta_keeping_the_law": 1.0, "tolerance": 0.3171,
        "by_beta": [{"beta": 0.05, "active_units": 4, "test_elbo": -28.5177}, {"beta": 1.0, "active_units": 4, "test_elbo": -23.485}],
        "mlp": {"latents": 8, "inactive_latents": 5, "test_log_likelihood": -22.8, "test_log_likelihood_se": 0.0123},
        "conv": {"latents": 8, "inactive_latents": 8, "test_log_likelihood": -24.0, "test_log_likelihood_se": 0.04},
        "all_collapsed": "every latent of the conv VAE collapsed",
    }
    lines = format_headline(headline).splitlines()
    assert "{" not in "".join(lines) and "mlp.of" not in "".join(lines)  # no Python dict, no dotted key
    by_beta = lines.index("by_beta:")
    assert lines[by_beta + 1].split() == ["β", "active", "latents", "test", "ELBO", "(nats", "per", "point)"]  # labels
    assert lines[by_beta + 2].split() == ["0.05", "4", "-28.52"] and lines[by_beta + 3].split() == ["1", "4", "-23.48"]
    rows = lines.index("per row:")
    assert lines[rows + 1].split() == ["latents", "inactive", "latents", "test", "log", "p(x)", "(nats", "per", "point)"]
    assert lines[rows + 2].split() == ["mlp", "8", "5", "-22.800", "+-", "0.012"]
    assert len({len(line) for line in lines[rows + 1:rows + 4]}) == 1  # aligned: every line of the table equally wide
    assert lines[-1] == "note: all_collapsed: every latent of the conv VAE collapsed"


def test_the_numbers_of_a_nested_mapping_that_is_no_row_are_kept():
    """A mapping holding numbers beside a table (``{"a": {"x": 1.5, "sub": {...}}}``) keeps its numbers as ``a.x``."""
    lines = format_headline({"a": {"x": 1.5, "sub": {"y": 2.0, "y_se": 0.1}}, "s": 3.0}).splitlines()
    assert lines[0].split() == ["a.x", "1.5"] and lines[1].split() == ["s", "3"]
    assert format_headline({"train_seconds": 2.5}).split() == ["training", "time", "(s)", "2.5", "train_seconds"]
    assert lines[-1].split() == ["sub", "2.00", "+-", "0.10"]
