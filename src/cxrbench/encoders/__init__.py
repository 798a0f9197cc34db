"""Encoders behind one feature API; one module per family, reached only through the registry."""
