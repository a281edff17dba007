"""gen_jax: generative image models (diffusion, VAE, GAN) in JAX/Flax on one training platform."""
