"""Sightfleet shared code: configuration, AWS access and the job/result contracts."""
