"""Published JSON Schemas of the public formats."""
