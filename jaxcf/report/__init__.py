"""Figures and tables of counterfactual runs.

Grids of queries, counterfactuals and differences; L0 and trade-off plots; embeddings of where
counterfactuals land; time series; attribution maps; attribute changes; and summary tables in
text and markdown. Every figure is drawn on a bare :class:`matplotlib.figure.Figure` with an Agg
canvas (importing this package changes neither matplotlib's global backend nor pyplot's state)
and written atomically as a PNG.
"""

from jaxcf.report._attributes import attribute_change_figure, attribute_ranking_plot
from jaxcf.report._attribution import DIVERGING_CMAP, SEQUENTIAL_CMAP, attribution_grid
from jaxcf.report._common import save_figure_atomic
from jaxcf.report._embedding import embedding_plot, pca_2d, target_scatter
from jaxcf.report._grids import counterfactual_grid, image_grid, labelled_rows
from jaxcf.report._html import write_html
from jaxcf.report._series import series_grid
from jaxcf.report._summary_plots import l0_plot, method_scatter
from jaxcf.report._tables import format_table, markdown_table, published_for

__all__ = [
    "DIVERGING_CMAP",
    "SEQUENTIAL_CMAP",
    "attribute_change_figure",
    "attribute_ranking_plot",
    "attribution_grid",
    "counterfactual_grid",
    "embedding_plot",
    "format_table",
    "image_grid",
    "l0_plot",
    "labelled_rows",
    "markdown_table",
    "method_scatter",
    "pca_2d",
    "published_for",
    "save_figure_atomic",
    "series_grid",
    "target_scatter",
    "write_html",
]
