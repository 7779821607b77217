"""Tools beside the job: benchmarks (``perf``, ``eval_memory``), the GPU check and the official UniAD loader.

They share one measurement kit (``bench.tools.measure``: timing, peak memory, other processes' CPU use).
``python -m bench`` never imports them.
"""
