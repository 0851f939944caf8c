"""Plugins: the API (`fastgw.plugins.base`), the chain builder, and the built-in plugins, one module each."""
