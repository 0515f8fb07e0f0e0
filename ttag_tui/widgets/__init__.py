"""The main screen's panes, one module per widget."""
