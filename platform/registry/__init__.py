"""registry: MLflow model versions, gated promotion of the champion, and the MLflow model itself."""
