"""What runs inside a step's kernel or container: the runtime that loads inputs and saves
outputs, the serializers, the papermill engine and the in-container entry point.

Import-light: a step's kernel pays for whatever this package imports.
"""
