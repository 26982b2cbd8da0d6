"""The ipywidgets panels and HTML views the notebooks show (reward explorer, transcripts)."""

from ftrl_lab.views.output import install_notebook_notes

install_notebook_notes()
