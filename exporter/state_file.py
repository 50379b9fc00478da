"""Small JSON files the exporter keeps across restarts in its state directory."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def save_json(path: Path, data) -> None:
    """Write `data` as JSON to `path` atomically (a temp file beside it, then rename), so a crash
    never leaves half a file. Raises OSError when the directory cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
