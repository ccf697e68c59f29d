"""Multithreaded load generator for Sightfleet (and CSE546-style targets), with its report."""
from workload_generator.config import API, MODES, SYNC, LoadConfig
from workload_generator.images import BUILTIN_GROUND_TRUTH, ImageFile, builtin_images, folder_images
from workload_generator.runner import RunRecord, run_workload

__all__ = ["API", "MODES", "SYNC", "LoadConfig", "BUILTIN_GROUND_TRUTH", "ImageFile", "builtin_images", "folder_images",
           "RunRecord", "run_workload"]
