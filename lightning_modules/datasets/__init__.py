"""Implementation of the data modules; the public surface is `lightning_modules.data`."""
