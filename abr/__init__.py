"""ABR decisions: the plain-data interface, the algorithms, throughput estimators and QoE models.

Pure and synchronous: no I/O, no clocks. Importing `abr` registers the built-in algorithms.
"""

from abr import algorithms as _algorithms  # noqa: F401  (registers the built-ins)
from abr.registry import make, names, register
from abr.types import AbrAlgorithm, Decision, Download, Ladder, Observation, Progress

__all__ = ["AbrAlgorithm", "Decision", "Download", "Ladder", "Observation", "Progress", "make", "names", "register"]
