"""Creates the project's virtual environment, with uv when it can be had and pip otherwise.

`make demo` and `make test` call it (`python3 -m scripts.setup_venv ...`); `--dry-run` prints
the commands it would run. It runs on the machine's own Python, before any environment exists,
so it uses the standard library only.
"""
