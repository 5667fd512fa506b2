"""refcast training pipeline: fetch -> prepare -> train -> evaluate -> export."""
