"""Layers analysed side by side: threads, each running torch with one intra-op thread.

Why threads, not Ray tasks or processes: a layer's analysis is three SVDs of at most a few
thousand columns (tenths of a second), which torch runs with the GIL released, so threads use
every core; a Ray task would cost more to schedule and ship its kernel than it computes, and the
`tucker-sweep seed` command has no Ray to ask. Why one intra-op thread each: many small SVDs
side by side keep the cores busier than MKL's threads within one (see spectra.one_thread).

torch.set_num_threads is not per thread, though it looks it: it sets the calling thread's
OpenMP and MKL counts and also the process-wide default that a thread copies at its first
parallel op. The workers set theirs to 1 once, at start; the caller's own count is never
touched, and the default they leaked is put back when the pool is done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

from lightning_modules.ranks.spectra import one_thread

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_on_threads(
    function: Callable[[Item], Result], items: Sequence[Item], workers: int
) -> list[Result]:
    """[function(item) for item in items], in order, on up to `workers` threads with one torch
    intra-op thread each (in this thread alone for a single worker or item). If calls raise,
    the exception of the earliest such item is raised here, once the running calls have
    finished; those not started are not made."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1 or len(items) <= 1:
        with one_thread():
            return [function(item) for item in items]
    callers = torch.get_num_threads()
    pool = ThreadPoolExecutor(
        max_workers=min(workers, len(items)),
        thread_name_prefix="rank-analysis",
        initializer=torch.set_num_threads,
        initargs=(1,),
    )
    try:
        return list(pool.map(function, items))
    finally:
        # On an error or a stop signal, the calls not started yet are dropped, not waited for.
        pool.shutdown(wait=True, cancel_futures=True)
        # This thread's count is `callers` already: only the process-wide default changes.
        torch.set_num_threads(callers)
