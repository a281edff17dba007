"""The GAN family (DCGAN, BigGAN, conditional and self-conditioned GANs, the MLP GAN on
ring8): experiment.py (its Experiment), schema.py (its config schema and tables),
checks.py (its config checks); see README.md."""
