"""The dataset card's Jinja2 templates (`README.md.j2`, `config.md.j2`).

A package only so that the templates ship in the wheel as package data: `pipeline.release.card` loads them
with `importlib.resources`, which works the same from a checkout and from an installed wheel.
"""
