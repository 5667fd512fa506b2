"""Gene-set collections shipped beside the model (build.py)."""
