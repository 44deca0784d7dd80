"""The napari face apart from the widgets: reader, writer, sample data (npe2 contributions)."""
