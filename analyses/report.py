"""``pyro-vae report DIR...``: one self-contained HTML page from the outputs of analyses and runs.

A contents list, then for each directory: its headline numbers as tables, the table of
``results.csv`` (label columns first, as the studies write it), for a fit its metrics, evaluation
summary and per-latent table, then its figures in reading order with captions
(:data:`~.report_content.FIGURES`), embedded as base64 so the page opens anywhere without its
folders, and its config and library versions folded away.  What the tables show and flag is
:mod:`.report_content`; the page is the Jinja2 template ``templates/report.html.j2``.

Only regular files that lie inside the given directories are read: a symbolic link (to a file or a
directory, which is not followed), anything resolving outside the directory, and anything that is not
a regular file (a FIFO, a directory named ``*.png``) are skipped and listed in the page with the reason,
so a received run directory cannot make the page embed files from elsewhere on the machine.
"""

import base64
import csv
import io
import json
import os
from pathlib import Path

import jinja2

from pyro_vae.errors import RunDirError
from pyro_vae.files import atomic_write_bytes, os_error_text, read_json, read_received

from .report_content import FIGURES, evaluation_tables, figure_caption, headline_tables, table

def _read_text(path):
    """The UTF-8 text of ``path``; one :class:`RunDirError` line if it is binary or unreadable."""
    try:
        return read_received(path).decode("utf-8")
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


def _json(text, name, notes):
    """A JSON file's object, or None with a note when it is not valid JSON (the text is then shown as is,
    rather than refused, so a half-written run still gets its page)."""
    try:
        value = json.loads(text)
    except ValueError as error:
        notes.append(f"{name} is not valid JSON ({error}); shown as text")
        return None
    if not isinstance(value, dict):
        notes.append(f"{name} holds a JSON {type(value).__name__}, not an object; shown as text")
        return None
    return value


def _results_table(inputs):
    """The table of ``results.csv``, or None without one.

    A row with more or fewer cells than the header is refused in one line rather than rendered:
    pyro-vae writes every row in full (``files.write_csv``), so such a file is damaged, and there is
    no honest way to tell which column a stray or missing cell belongs to."""
    text = inputs.text("results.csv")
    if text is None:
        return None
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
    return table(f"results.csv ({len(body)} rows)", header, body) if header else None


def _figures(inputs):
    """The PNGs under the directory in reading order (known figures first, in :data:`FIGURES` order),
    each with its caption and its bytes as base64."""
    order = {name: place for place, name in enumerate(FIGURES)}
    # the directory's own figures first, then those of the fits inside it (a study's fits/<key>/...)
    images = sorted(inputs.images(), key=lambda path: (len(path.relative_to(inputs.directory).parts) > 2,
                                                       order.get(path.name, len(order)), str(path)))
    return [{"name": str(path.relative_to(inputs.directory)), "caption": figure_caption(path.name),
             "data": base64.b64encode(read_received(path)).decode()} for path in images]


def _documents(inputs, notes):
    """The tables of headline.json, metrics.json and evaluation.json, and the raw text of those that are
    not valid JSON objects."""
    tables, raw = [], []
    readers = {"headline.json": headline_tables,
               "metrics.json": lambda value: headline_tables(value, "Fit metrics (metrics.json)"),
               "evaluation.json": lambda value: (evaluation_tables(value), [])}
    for name, reader in readers.items():
        text = inputs.text(name)
        if text is None:
            continue
        value = _json(text, name, notes)
        if value is None:
            raw.append({"title": name, "text": text})
            continue
        found, text_notes = reader(value)
        tables += found
        notes += text_notes
    return tables, raw


def section(directory, index=0):
    """What the page shows of one analysis or run directory (a dict for the template); raises
    :class:`RunDirError` in one line for a missing or empty directory or a damaged config.json /
    results.csv."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RunDirError(f"{directory} is not a directory")
    inputs = _Inputs(directory)
    config_path = inputs.file("config.json")
    config = read_json(config_path, kind=dict) if config_path else {}
    notes = []
    tables, raw = _documents(inputs, notes)
    results = _results_table(inputs)
    tables += [results] if results else []
    figures = _figures(inputs)
    if not (tables or raw or figures or config):
        skipped = f" (skipped: {inputs.skipped_text()})" if inputs.skipped else ""
        raise RunDirError(f"{directory} holds no analysis or run outputs (config.json, results.csv, "
                          f"metrics.json, figures){skipped}")
    is_fit = inputs.file("metrics.json") is not None
    title = config.get("analysis") or ("fit" if is_fit else directory.name)
    details = [{"title": "config", "text": _read_text(config_path) if config_path else None},
               {"title": "library versions", "text": inputs.text("versions.json")}]
    return {"id": f"section-{index}", "title": str(title), "path": str(directory), "notes": notes,
            "skipped": inputs.skipped_text(), "tables": tables, "raw": raw, "figures": figures,
            "details": [d for d in details if d["text"] is not None]}


_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("pyro_vae.analyses", "templates"),
                                autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(directories):
    """The HTML page of ``directories``, as text."""
    sections = [section(directory, index) for index, directory in enumerate(directories)]
    return _TEMPLATES.get_template("report.html.j2").render(sections=sections)


def write_report(directories, out):
    """Write the HTML page for ``directories`` to ``out`` (atomically) and return its path."""
    if Path(out).is_dir():
        raise RunDirError(f"--out {out} is a directory; expected an HTML file path")
    atomic_write_bytes(out, render(directories).encode())
    return Path(out)
