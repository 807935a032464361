"""Helpers the tests share: small seeded fixtures, a tiny trained model, the official forward for reference."""
