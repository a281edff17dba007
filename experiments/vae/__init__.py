"""The VAE family (ELBO training, held-out ELBO and IWAE): experiment.py (its Experiment),
schema.py (its config schema and tables), checks.py (its config checks); see README.md."""
