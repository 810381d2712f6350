"""Journey definitions: one TOML per journey plus Jinja2 templates under templates/; their
models and loader are journeys.config."""
