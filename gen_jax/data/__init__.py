"""Datasets and batches: array sources, batch order, tfds / folder / IDX datasets, grain records, toy data."""
