"""Seeding a sweep: a dense baseline, the candidate ranks its trained kernels give per layer,
written as seed.json with a plot of the spectra.

    baseline.py       train (or load) the dense model; its per-epoch history
    seed.py           baseline -> candidate ranks -> seed.json + spectra.png; `tucker-sweep seed`
    seed_file.py      seed.json: the versioned, validated file
    seed_versions.py  older seed.json versions, read as the current one
    spectrum_plot.py  spectra.png
"""
