"""Research tools that compose the rest: simulator, optimum, sweeps, reports, experiments, training."""
