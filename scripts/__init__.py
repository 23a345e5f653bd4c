"""Maintenance scripts. A package so that `python3 -m scripts.setup_venv` finds this folder even
where some installed distribution ships a top-level `scripts` package of its own."""
