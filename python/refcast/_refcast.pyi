"""Type stubs of the compiled module (python/src/lib.rs); use the ``refcast`` package's API."""

from os import PathLike
from typing import Any

import numpy as np
import numpy.typing as npt

__version__: str
FOLD_CHANGE_UNITS: str
FOLD_CHANGE_NOTE: str
SCREEN_LEGEND: list[tuple[str, str]]
SCREEN_LEGEND_BY_REVERSAL: list[tuple[str, str]]

class Table:
    @staticmethod
    def from_columns(genes: list[str], samples: list[str], values: npt.NDArray[np.float64], kind: str = "auto") -> Table: ...
    @staticmethod
    def read(path: str | PathLike[str], kind: str = "auto") -> Table: ...
    @property
    def genes(self) -> list[str]: ...
    @property
    def samples(self) -> list[str]: ...
    @property
    def kind(self) -> str: ...
    @property
    def interpretation(self) -> str | None: ...

class Model:
    @property
    def backend(self) -> str: ...
    @property
    def backend_reason(self) -> str: ...
    @property
    def adapter(self) -> str: ...
    @property
    def checksum(self) -> str: ...
    @property
    def genes(self) -> list[str]: ...
    @property
    def ensembl(self) -> list[str | None]: ...
    def info(self) -> dict[str, Any]: ...
    def predict(
        self,
        table: Table | None,
        perturbations: list[str | dict[str, str | float]] | None,
        *,
        context: str | dict[str, str | float] | None = None,
        condition_on: list[str] | None = None,
        mode: str | None = None,
        versus: str | None = None,
        num_samples: int | None = None,
        seed: int = 0,
        library_size: float | None = None,
    ) -> dict[str, Any]: ...
    def screen(
        self,
        table: Table,
        *,
        perturbations: list[str | dict[str, str | float]] | None = None,
        up: list[str] | None = None,
        down: list[str] | None = None,
        weights: list[tuple[str, float]] | None = None,
        context: str | dict[str, str | float] | None = None,
        condition_on: list[str] | None = None,
        mode: str | None = None,
        versus: str | None = None,
        library_size: float | None = None,
    ) -> dict[str, Any]: ...

class GeneSetFile:
    @property
    def sets(self) -> list[tuple[str, str, str]]: ...
    @property
    def collections(self) -> list[tuple[str, str, str]]: ...
    @property
    def checksum(self) -> str: ...
    def score(self, log_fold_change: npt.NDArray[np.float32], measured: npt.NDArray[np.bool_]) -> dict[str, Any]: ...

GENE_SETS_FILE: str
ENRICHMENT_LEGEND: list[tuple[str, str]]

def load(path: str | PathLike[str], backend: str = "auto", sha256: str | None = None) -> Model: ...
def load_gene_sets(path: str | PathLike[str], model: Model) -> GeneSetFile: ...
def describe_metadata(fields: dict[str, str | float]) -> str: ...
