"""Views of a stream or a value: table, chart, value tree (the log and fields views are
the chunk log). Each reads a view model from console/core/views."""
