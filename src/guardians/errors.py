"""The error hierarchy shared by every layer.

Every failure a user or a peer can cause raises a subclass of :class:`GuardiansError` whose
message names what was wrong (file, row, column, member, message kind, field).
"""

from __future__ import annotations


class GuardiansError(Exception):
    """Base class of every error Guardians raises on purpose."""


# --- data ---------------------------------------------------------------------------------
class DataError(GuardiansError):
    """A dataset could not be loaded or does not fit what was asked of it."""


class UnknownDatasetError(DataError):
    """The dataset name is not one Guardians knows."""


class MissingLabelError(DataError):
    """The named label column is not in the file."""


class ConstantLabelError(DataError):
    """The label column holds a single value, so there is nothing to learn."""


class NonNumericLabelError(DataError):
    """A label value is not a number."""


class NonNumericFeatureError(DataError):
    """A feature value is not a number."""


class RaggedRowError(DataError):
    """A row has a different number of fields than the header."""


class FeatureMismatchError(DataError):
    """Two parts of one dataset (train and test, or two members) disagree on the features."""


class EmptyDatasetError(DataError):
    """A file or a partition holds no usable rows."""


class PartitionError(DataError):
    """Data cannot be split across members as asked."""


# --- models -------------------------------------------------------------------------------
class ModelError(GuardiansError):
    """A model was given something it cannot use."""


class ParameterShapeError(ModelError):
    """A parameter vector has the wrong length, dtype or non-finite values."""


# --- protocol -----------------------------------------------------------------------------
class ProtocolError(GuardiansError):
    """A protocol rule was broken."""


class LocalProtocolError(ProtocolError):
    """Our own side used a protocol state machine wrongly (a bug in the caller)."""


class RemoteProtocolError(ProtocolError):
    """A peer sent something the protocol does not allow; names the peer and what it sent."""

    def __init__(self, message: str, *, peer: str | None = None) -> None:
        super().__init__(message)
        self.peer = peer


class DecodeError(RemoteProtocolError):
    """Bytes received from the network are not a well-formed message."""


class RoundAbortedError(ProtocolError):
    """A round could not complete; no partial model is released."""


# --- configuration ------------------------------------------------------------------------
class ConfigError(GuardiansError):
    """A configuration value is invalid or incoherent."""
