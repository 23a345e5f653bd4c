"""CNN definitions, one family per file; build them through lightning_modules.models."""
