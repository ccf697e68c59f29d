"""Deploying a stack to AWS (or any endpoint): the CloudFormation template, scripts/deploy and scripts/destroy.

Imports boto3 through sightfleet.aws only, never torch or the pipeline, so it runs from a small venv.
"""
