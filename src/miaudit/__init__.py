"""miaudit: measure how much a trained model reveals about its training data, and close the leak."""

from miaudit._version import __version__
from miaudit.audit import AuditResult, attack
from miaudit.data import ModelOutputs, SignalsStore, load_outputs, load_signals
from miaudit.errors import InputError, MiauditError

__all__ = ["AuditResult", "InputError", "MiauditError", "ModelOutputs", "SignalsStore", "__version__", "attack", "load_outputs", "load_signals"]
