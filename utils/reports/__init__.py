"""Reports: a typed description of a page (``document``), downsampling with extremes kept
(``downsample``), table text (``format``) and the one renderer that knows plotly (``render``)."""
