"""Exceptions of refcast: one class per kind of the library's errors (``Error::kind``), each
carrying the library's message, which names the gene, sample, field or limit at fault."""


class RefcastError(ValueError):
    """Base class of refcast's errors."""


class FormatError(RefcastError):
    """The model file is not a valid refcast model, or its checksum does not match."""


class SampleError(RefcastError):
    """The sample (expression data) cannot be used: duplicate genes, negative counts, …"""


class SignatureError(RefcastError):
    """The signature given to ``screen`` cannot be used."""


class MetadataError(RefcastError):
    """Metadata (a context, a perturbation's fields) the model does not know."""


class RequestError(RefcastError):
    """A request that does not make sense (wrong lengths, a missing column, …)."""


class GpuError(RefcastError, RuntimeError):
    """The GPU backend failed: no adapter, device lost, out of memory."""


class IoError(RefcastError, OSError):
    """Reading a file failed."""


class RefcastWarning(UserWarning):
    """A setting without effect, or a prediction that extrapolates (a perturbation never measured
    at that time or dose, or only in contexts unlike the sample's), as the CLI warns of them."""


__all__ = ["RefcastWarning", "RefcastError", "FormatError", "SampleError", "SignatureError", "MetadataError", "RequestError", "GpuError", "IoError"]
