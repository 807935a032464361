"""Shipped YAML presets (data only); load them with stark.platform.experiment.load_config(NAME)."""
