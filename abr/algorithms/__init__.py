"""Built-in algorithms; importing this package registers them."""

from abr.algorithms import bba, bola, dynamic, learned, mpc, rate, sabre, sabre_bola, sabre_dynamic  # noqa: F401  (each registers itself)
