"""The VM's Python env as uv creates it (pyvenv.cfg) with torch's dist-info as pip/uv install it."""
from __future__ import annotations

from pathlib import Path


def make_notebooks_env(root: Path, python: str = "3.12.3", torch: str | None = "2.5.1+cu124") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyvenv.cfg").write_text(f"home = /usr/bin\nimplementation = CPython\nversion_info = {python}\n")
    site = root / "lib" / f"python{python.rsplit('.', 1)[0]}" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    if torch:
        dist = site / f"torch-{torch}.dist-info"
        dist.mkdir()
        # The body repeats "Version:" to check only the header block is read.
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {torch}\n"
                                       "Summary: Tensors\n\nVersion: 0.0 in the description\n")
    return root
