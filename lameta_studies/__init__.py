"""Offline studies that need both the rApp's models and the xApp's policies (the paper's
Figs. 9-11 and the generalisation study).

The one place allowed to import both ``rapp_intent`` and ``xapp_composer``; no service
imports it.
"""
