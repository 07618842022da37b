"""Built-in algorithms; importing this package registers them."""

from abr.algorithms import bba, bola, dynamic, l2a, learned, lolp, mpc, rate, sabre, sabre_bola, sabre_dynamic  # noqa: F401  (each registers itself)
