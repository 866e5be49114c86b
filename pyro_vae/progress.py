"""Progress bars for long work (fits, sweeps, evaluations), shown only where a person watches."""


def progress_bar(iterable=None, progress=None, **kwargs):
    """A ``tqdm`` bar; ``progress=None`` shows it only when stderr is a terminal, True/False force it."""
    import sys

    from tqdm.auto import tqdm

    enabled = sys.stderr.isatty() if progress is None else progress
    return tqdm(iterable, disable=not enabled, dynamic_ncols=True, **kwargs)
