"""Every benchmark in one go (``python -m scripts.bench``) and the benchmarks it runs, one module each."""
