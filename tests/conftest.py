import sys
from pathlib import Path

import pytest

# The repo root must be importable as-is (tests/, exporter/, admin/) even without `pip install -e`.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.env import wordslab_env  # noqa: E402


@pytest.fixture
def vm_env(tmp_path):
    """Env dict of a fresh VM laid out under tmp_path."""
    return wordslab_env(tmp_path)
