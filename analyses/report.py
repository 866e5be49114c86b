"""``pyro-vae report DIR...``: one self-contained HTML page from the outputs of analyses and runs.

For each directory: its config, library versions, headline numbers, the table of ``results.csv``
(or ``metrics.json`` / ``evaluation.json`` summary for a fit), and every PNG under it, embedded as
base64 so the page opens anywhere without its folders.

Only regular files that lie inside the given directories are read: a symbolic link (to a file or a
directory, which is not followed), anything resolving outside the directory, and anything that is not
a regular file (a FIFO, a directory named ``*.png``) are skipped and listed in the page with the reason,
so a received run directory cannot make the page embed files from elsewhere on the machine.
"""

import base64
import csv
import html
import io
import json
import os
from pathlib import Path

from pyro_vae.errors import RunDirError
from pyro_vae.files import atomic_write_bytes, os_error_text, read_json

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1em; }
td, th { border: 1px solid #ddd; padding: .2em .5em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
pre { background: #f7f7f7; padding: .6em; font-size: .8em; overflow-x: auto; }
img { max-width: 100%; border: 1px solid #eee; margin: .3em 0; }
details { margin: .5em 0; }
.note { color: #a40; font-size: .85em; }
"""


def _format(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return html.escape(str(value))
    return f"{number:.4g}" if abs(number) < 1e5 else f"{number:.4e}"


def _table(header, rows):
    if not header:
        return ""
    head = "".join(f"<th>{html.escape(k)}</th>" for k in header)
    body = "".join("<tr>" + "".join(f"<td>{_format(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _read_bytes(path):
    try:
        return path.read_bytes()
    except OSError as error:
        raise RunDirError(f"cannot read {path}: {os_error_text(error)}") from None


def _read_text(path):
    """The UTF-8 text of ``path``; one :class:`RunDirError` line if it is binary or unreadable."""
    try:
        return _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as error:
        raise RunDirError(f"{path} is not UTF-8 text (invalid byte at offset {error.start}); "
                          "expected the text file pyro-vae writes") from None


class _Inputs:
    """The files of one directory that the page may show, and the entries it skipped (with why)."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.root = self.directory.resolve()
        self.skipped = []  # (path relative to the directory, reason)

    def _refusal(self, path):
        """Why ``path`` may not be read, or None for a regular file inside the directory."""
        if path.is_symlink():
            return "a symbolic link"
        if not path.resolve().is_relative_to(self.root):
            return "outside the directory"
        if not path.is_file():
            return "not a regular file"
        return None

    def _skip(self, path, reason):
        self.skipped.append((path.relative_to(self.directory), reason))

    def _usable(self, path):
        reason = self._refusal(path)
        if reason:
            self._skip(path, reason)
        return reason is None

    def file(self, name):
        """``DIRECTORY/name`` if it is there and may be read, else None (a skip is recorded)."""
        path = self.directory / name
        if not (path.exists() or path.is_symlink()):
            return None
        return path if self._usable(path) else None

    def text(self, name):
        """The text of ``DIRECTORY/name``, or None (see :meth:`file`)."""
        path = self.file(name)
        return None if path is None else _read_text(path)

    def images(self):
        """The PNG files under the directory, sorted.  ``os.walk`` does not descend into symbolic
        links to directories (nor does ``Path.rglob`` on 3.11, but it does yield symlinked files and
        directories named ``*.png``; being explicit keeps this independent of the Python version)."""
        found = []
        onerror = lambda error: self._skip(Path(error.filename), os_error_text(error))  # noqa: E731
        for parent, dirs, files in os.walk(self.directory, followlinks=False, onerror=onerror):
            parent = Path(parent)
            for name in dirs:
                if (parent / name).is_symlink():
                    self._skip(parent / name, "a symbolic link to a directory (not followed)")
            found += [parent / name for name in files if name.endswith(".png")]
        return [path for path in sorted(found) if self._usable(path)]

    def skipped_text(self):
        """What was skipped and why, in one line ("" if nothing)."""
        return "; ".join(f"{path}: {reason}" for path, reason in self.skipped)

    def note(self):
        """A short HTML note on what was skipped, or ""."""
        if not self.skipped:
            return ""
        return f"<p class=\"note\">Skipped (not embedded): {html.escape(self.skipped_text())}.</p>"


def _json_text(text, name):
    """A JSON file's text in a <pre>, with a note when it is not valid JSON: shown rather than
    refused, so a half-written run still gets its page."""
    try:
        json.loads(text)
        note = ""
    except ValueError as error:
        reason = html.escape(f"{name} is not valid JSON ({error}); shown as text")
        note = f"<p class=\"note\">{reason}.</p>"
    return f"{note}<pre>{html.escape(text)}</pre>"


def _results_table(inputs):
    """The table of ``results.csv``, or "" without one.

    A row with more or fewer cells than the header is refused in one line rather than rendered:
    pyro-vae writes every row in full (``files.write_csv``), so such a file is damaged, and there is
    no honest way to tell which column a stray or missing cell belongs to."""
    text = inputs.text("results.csv")
    if text is None:
        return ""
    path = inputs.directory / "results.csv"
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as error:
        raise RunDirError(f"{path} is not valid CSV: {error}") from None
    header, body = (rows[0], rows[1:]) if rows else ([], [])
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise RunDirError(f"{path} row {number} has {len(row)} cells but the header has {len(header)}; "
                              "expected one cell per column")
    return _table(header, body)


def _details(title, text):
    if text is None:
        return ""
    return f"<details><summary>{html.escape(title)}</summary><pre>{html.escape(text)}</pre></details>"


def _image(path, directory):
    encoded = base64.b64encode(_read_bytes(path)).decode()
    return (f"<p><b>{html.escape(str(path.relative_to(directory)))}</b><br>"
            f"<img src=\"data:image/png;base64,{encoded}\"></p>")


def section(directory):
    """The HTML of one analysis or run directory; raises :class:`RunDirError` in one line for a
    missing or empty directory or a damaged config.json / results.csv."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RunDirError(f"{directory} is not a directory")
    inputs = _Inputs(directory)
    config_path = inputs.file("config.json")
    config = read_json(config_path, kind=dict) if config_path else {}
    outputs = {name: inputs.text(name) for name in ("headline.json", "metrics.json")}
    title = config.get("analysis") or ("fit" if outputs["metrics.json"] is not None else directory.name)
    parts = [_json_text(text, name) for name, text in outputs.items() if text is not None]
    parts.append(_results_table(inputs))
    parts += [_image(path, directory) for path in inputs.images()]
    if not any(parts) and not config:
        skipped = f" (skipped: {inputs.skipped_text()})" if inputs.skipped else ""
        raise RunDirError(f"{directory} holds no analysis or run outputs (config.json, results.csv, "
                          f"metrics.json, figures){skipped}")
    parts.append(_details("config", _read_text(config_path) if config_path else None))
    parts.append(_details("library versions", inputs.text("versions.json")))
    heading = f"<h2>{html.escape(str(title))} <small>({html.escape(str(directory))})</small></h2>"
    return "\n".join([heading, inputs.note(), *parts])


def write_report(directories, out):
    """Write the HTML page for ``directories`` to ``out`` (atomically) and return its path."""
    if Path(out).is_dir():
        raise RunDirError(f"--out {out} is a directory; expected an HTML file path")
    body = "\n".join(section(d) for d in directories)
    page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>pyro-vae report</title>"
            f"<style>{STYLE}</style></head><body><h1>pyro-vae report</h1>{body}</body></html>")
    atomic_write_bytes(out, page.encode())
    return Path(out)
