"""The diffusion family (DDPM / DDIM and the sigma-space samplers on a U-Net): experiment.py
(its Experiment), schema.py (its config schema and tables), checks.py (its config checks);
see README.md."""
