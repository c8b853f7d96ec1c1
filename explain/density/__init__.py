"""Regularised class-conditional feature densities for DeDUCE: the full Gaussian fit beside the
shrinkage and PCA fits of :class:`jaxcf.models.DensityConfig`, on one classifier, explained on the
same pairs.

Config files in ``configs/`` run with
``jaxcf explain explain/density/configs/<name>.py --workdir W`` from the repository root."""

from explain.density.comparison import DensityComparison, density_table

__all__ = ["DensityComparison", "density_table"]
