"""Endless streams of batches, for the training loop and the benchmarks (no MXNet import: the
benchmarks also run where only DALI is installed)."""


def endless(loader, keep=None, no_data=None, error=RuntimeError):
    """Batches of `loader`, pass after pass; the caller decides where its epochs end.

    Parameters
    ----------
    loader : iterable
        Re-iterable: each `iter(loader)` is one pass over its data.
    keep : callable, optional
        Only batches for which `keep(batch)` is true are yielded (e.g. full batches).
    no_data : str, optional
        The message of the error raised when the loader yields nothing kept.
    error : type
        The exception raised then.

    A loader restored from a checkpoint taken at the end of its pass starts with an empty
    pass, so one empty pass is passed over; two in a row mean the loader has no data at all.
    """
    empty_passes = 0
    while True:
        produced = False
        for batch in loader:
            if keep is None or keep(batch):
                produced = True
                yield batch
        empty_passes = 0 if produced else empty_passes + 1
        if empty_passes == 2:
            raise error(no_data or "the loader produced no batch in a whole pass")
