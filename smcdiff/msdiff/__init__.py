"""In-house models of "Non-Uniform Diffusion Models": multiscale Haar diffusion and CDE / CDiffE / CMDE.

Public names are collected in two facades, :mod:`smcdiff.msdiff.multiscale` and
:mod:`smcdiff.msdiff.conditional`; each is defined in the module of its concern:

- ``haar``: the Haar transform and the packing of its coefficients;
- ``process``: the multiscale forward process, the per-scale score protocol, exact Gaussian scores;
- ``networks``: the UNet backbone of every in-house model;
- ``configs``, ``models``, ``sampler``: the multiscale and uniform models, their losses and the sampler;
- ``conditional_config``, ``observation``, ``conditional_losses``, ``estimator``: the conditional estimators;
- ``trainers``: the training of both families on :func:`smcdiff.training.fit`.

Files of all of them follow :mod:`smcdiff.persistence`.
"""
