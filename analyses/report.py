"""``pyro-vae report DIR...``: one self-contained HTML page from the outputs of analyses and runs.

For each directory: its config, library versions, headline numbers, the table of ``results.csv``
(or ``metrics.json`` / ``evaluation.json`` summary for a fit), and every PNG under it, embedded as
base64 so the page opens anywhere without its folders.
"""

import base64
import csv
import html
import json
from pathlib import Path

from pyro_vae.errors import RunDirError
from pyro_vae.rundir import atomic_write_bytes

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1em; }
td, th { border: 1px solid #ddd; padding: .2em .5em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
pre { background: #f7f7f7; padding: .6em; font-size: .8em; overflow-x: auto; }
img { max-width: 100%; border: 1px solid #eee; margin: .3em 0; }
details { margin: .5em 0; }
"""


def _format(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return html.escape(str(value))
    return f"{number:.4g}" if abs(number) < 1e5 else f"{number:.4e}"


def _table(rows):
    if not rows:
        return ""
    keys = list(rows[0])
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{_format(row.get(k, ''))}</td>" for k in keys) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _json_block(title, path):
    if not path.exists():
        return ""
    return f"<details><summary>{html.escape(title)}</summary><pre>{html.escape(path.read_text())}</pre></details>"


def section(directory):
    directory = Path(directory)
    if not directory.is_dir():
        raise RunDirError(f"{directory} is not a directory")
    config = json.loads((directory / "config.json").read_text()) if (directory / "config.json").exists() else {}
    title = config.get("analysis") or ("fit" if (directory / "metrics.json").exists() else directory.name)
    parts = [f"<h2>{html.escape(title)} <small>({html.escape(str(directory))})</small></h2>"]
    for name in ("headline.json", "metrics.json"):
        if (directory / name).exists():
            parts.append(f"<pre>{html.escape((directory / name).read_text())}</pre>")
    if (directory / "results.csv").exists():
        with open(directory / "results.csv") as handle:
            parts.append(_table(list(csv.DictReader(handle))))
    for image in sorted(directory.rglob("*.png")):
        encoded = base64.b64encode(image.read_bytes()).decode()
        parts.append(f"<p><b>{html.escape(str(image.relative_to(directory)))}</b><br>"
                     f"<img src=\"data:image/png;base64,{encoded}\"></p>")
    parts.append(_json_block("config", directory / "config.json"))
    parts.append(_json_block("library versions", directory / "versions.json"))
    if len(parts) == 3 and not config:
        raise RunDirError(f"{directory} holds no analysis or run outputs (config.json, results.csv, metrics.json, figures)")
    return "\n".join(parts)


def write_report(directories, out):
    """Write the HTML page for ``directories`` to ``out`` (atomically) and return its path."""
    body = "\n".join(section(d) for d in directories)
    page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>pyro-vae report</title>"
            f"<style>{STYLE}</style></head><body><h1>pyro-vae report</h1>{body}</body></html>")
    atomic_write_bytes(out, page.encode())
    return Path(out)
