"""Imports every family's converters so that they register themselves."""
