"""The ipywidgets panels and HTML views the notebooks show (reward explorer, transcripts)."""
