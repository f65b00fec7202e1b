"""Dataset formats: the DICE v1 schema and validator, importers, converters, split, compatibility.

Pure Python + numpy/Pillow: no torch, so the server can import it.
"""
