"""harness: build, boot and check Linux page migration against a reference model."""

__version__ = "0.1.0"
