"""Example functions and servers for metatwin-functions."""
