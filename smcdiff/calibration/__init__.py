"""Simulation-based calibration (SBC) of conditional samplers.

Talts et al. (2018): draw x* from the model's own (discretised) prior, simulate y = A x* + sigma_y eps,
draw L samples from a sampler given y; if the sampler samples the posterior, the rank of f(x*) among the
L values f(draw) is uniform on {0..L} for every statistic f. Säilynoja, Bürkner & Vehtari (2022): the
graphical test with simultaneous ECDF bands.

    x_star, y = simulate_problems(score, sde, operator, noise_std, n=500, generator=g)
    result = sbc(lambda yb: draws_of(yb), x_star, y, draws=99, operator=operator, generator=g)
    result.verdict()      # "consistent with calibrated at level 0.01 (corrected p = 0.43; ...)"
    result.plot("sbc.png"); result.save("sbc.npz"); load_sbc("sbc.npz")

Any sampler plugs in as a callable ``y_batch (b, *obs) -> (b, L, *event_shape)``.
"""

from .bands import ecdf_bands, ecdf_p_values
from .ranks import STATISTICS, compute_ranks, sbc
from .result import SBCResult, concat_sbc, load_sbc, statistic_group
from .simulate import simulate_problems

__all__ = [
    "simulate_problems",
    "sbc",
    "SBCResult",
    "load_sbc",
    "concat_sbc",
    "ecdf_bands",
    "ecdf_p_values",
    "compute_ranks",
    "statistic_group",
    "STATISTICS",
]
