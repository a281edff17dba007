"""Evaluation of generative models: feature extractors, reference statistics, metrics."""
