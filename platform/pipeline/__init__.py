"""pipeline: the configuration of `stark pipeline` (which steps run, on which data)."""
