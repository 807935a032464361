"""Specifications of stark-platform, one package per part of the code (model/, ingest/, data/, ...)."""
