"""Training a decoder: the loop (`stylize-adain-train`), its config, data, cache, losses and run files."""
