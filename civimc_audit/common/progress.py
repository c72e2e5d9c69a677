"""Progress bars that cost nothing when off: tqdm (and what tqdm.auto imports to choose a
notebook or terminal bar) is imported only for a bar that is shown, so a command run without a
terminal starts faster."""

from __future__ import annotations


class _NoBar:
    """What a hidden bar does: nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc) -> None:
        return None


def progress_bar(show: bool, **options):
    """A tqdm bar with `options` when `show`, else one that does nothing; a context manager."""
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(leave=False, **options)
