"""airspeed velocity (asv) benchmarks: regression tracking of the speed figures.

The measured figures, their commands and machines are in
``benchmarks/README.md``; these benchmarks only record timings (and a
Latent-Pursuit / Oracle ratio measured in one process) for asv's history,
never assert them. From the repository root::

    pip install asv
    asv run --python=same --quick --show-stderr   # once, in the current environment
    asv run --python=same                         # recorded under .asv/results
    asv run main~5..main                          # past commits (builds .asv/env)
    asv publish && asv preview                    # the history as HTML

Every ``transform`` runs on one BLAS thread (skinvert's kernels do by
design); ``setup`` builds the generator, the signals and the fitted
estimators, which are not timed.
"""
