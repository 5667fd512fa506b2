import os
from pathlib import Path

import pandas as pd
import pytest

import refcast

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
KANG = EXAMPLES / "kang_cd14_mono_ctrl.tsv"


def cli() -> Path:
    """The CLI that `cargo test` built (REFCAST_BIN overrides); under CI=true a missing one fails."""
    path = Path(os.environ.get("REFCAST_BIN", ROOT / "target" / "debug" / "refcast"))
    if not path.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing: build it with cargo build")
        pytest.skip(f"{path} is missing")
    return path


def load_on(backend: str, path=None) -> refcast.Model:
    """A model on `backend`. The GPU backend takes any adapter, lavapipe included; without one
    the GPU cases skip, except under CI=true, where they fail."""
    try:
        return refcast.load(path, backend=backend)
    except refcast.GpuError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires a GPU adapter (lavapipe in CI), and none was found: {e}")
        pytest.skip(f"no GPU adapter: {e}")


@pytest.fixture(scope="session")
def model():
    return refcast.load(backend="cpu")


@pytest.fixture(scope="session")
def kang() -> pd.Series:
    """The bundled Kang CD14 monocyte control sample (counts), as a Series."""
    frame = pd.read_csv(KANG, sep="\t", index_col=0)
    series = frame["count"]
    series.name = "kang_cd14_mono_ctrl"
    return series
