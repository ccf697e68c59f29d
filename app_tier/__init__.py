"""The app tier: a worker that polls the request queue and runs the recognition pipeline."""
