"""Data layer shared by starter/ (records events) and activities/ (reads state)."""
