"""Browser files served from inside installed Python packages (plotly.js, Swagger UI): no CDN, no copies in the repo."""
from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path


def package_folder(module: str, distribution: str | None = None) -> tuple[Path, str]:
    """The installed package's folder and its distribution's version; RuntimeError when it is missing."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {distribution or module} package is not installed (see requirements.txt)")
    return Path(next(iter(spec.submodule_search_locations))), importlib.metadata.version(distribution or module)
