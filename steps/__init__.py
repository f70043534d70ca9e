"""The library behind the flows: plain, typed functions the Metaflow steps call.

``METAFLOW_PACKAGE_POLICY = "include"`` makes Metaflow put this package into the code package it ships to
remote tasks (AWS Batch, Kubernetes), so ``import steps`` works there exactly as on a laptop.
"""

METAFLOW_PACKAGE_POLICY = "include"
