"""Test support: the real CLI in a scratch folder, a hand-made MLflow store, a multi-node Ray
cluster in network namespaces, an MLflow server, and fault injection for sweeps."""
