"""Shipped YAML presets (data only); load them with stark.platform.config.load_config(NAME)."""
