"""Thin adapters for model libraries, imported only when used.

- :mod:`featurecontrols.adapters.transformer_lens`: list hook names, call a HookedTransformer.
- :mod:`featurecontrols.adapters.huggingface`: TransformerLens-style names for Hugging Face
  module paths, call a model on tokenizer output, read a site per token or per sentence (``Readout``).

Neither imports its library: both work on the model object they are given.
"""
