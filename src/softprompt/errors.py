"""Exceptions with messages that say what was expected and where."""


class SoftPromptError(Exception):
    """Base class for every error softprompt raises on purpose."""


class ConfigError(SoftPromptError, ValueError):
    """A configuration field has a bad value; the message names the field."""


class DataError(SoftPromptError, ValueError):
    """A data file is missing or malformed; the message names file and line."""


class BackboneError(SoftPromptError, RuntimeError):
    """A backbone cannot be resolved or loaded; the message says how to fix it."""


class AdapterError(SoftPromptError, ValueError):
    """An adapter file is unsafe, malformed or made for another base model."""


class UnsupportedModelError(BackboneError):
    """A model's architecture cannot be driven; the message names it, what is missing and what is supported."""
