"""Evaluation protocols of the papers jaxcf reproduces: their pairs, resources and published
numbers, run through :mod:`jaxcf.experiment`."""
