"""Webhooks: endpoints accounts register (service.py, views.py) and the process that delivers to them (deliver.py)."""
