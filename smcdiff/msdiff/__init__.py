"""In-house models of "Non-Uniform Diffusion Models": multiscale Haar diffusion and CDE / CDiffE / CMDE."""
