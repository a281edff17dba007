"""The latent diffusion family (a U-Net in a trained VAE's latent space): experiment.py (its
Experiment), schema.py (its config schema and tables), checks.py (its config checks); see
README.md."""
