"""Evaluation: metrics, plots, the HTML report and run comparison."""
