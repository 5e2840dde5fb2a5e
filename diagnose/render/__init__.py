"""Renderers: read the findings document and the series, draw, never decide."""
