"""BitMail: a reliable e-mail service."""

__version__ = "0.1.0"
