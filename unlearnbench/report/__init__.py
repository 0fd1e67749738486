"""The report: leaderboards and the CLI's run summary, built from run records only."""
from .rows import aggregate, build, consistency, render_csv, render_html, render_index, render_markdown

__all__ = ["aggregate", "build", "consistency", "render_csv", "render_html", "render_index", "render_markdown"]
