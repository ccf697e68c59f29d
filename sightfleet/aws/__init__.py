"""Thin modules per AWS service; the only place in the project that imports boto3."""
