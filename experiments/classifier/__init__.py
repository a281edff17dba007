"""The classifier family (a small CNN: the feature extractor of the digits evaluations):
experiment.py (its Experiment), schema.py (its config schema and tables), checks.py (its
config checks); see README.md."""
