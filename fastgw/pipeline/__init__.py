"""The request's life between the connection and the integration.

`dispatch` turns a parsed request into an `Exchange` (path, route match, misses); the exchange owns that one
request from the match to the log phase: the plugins' request phases, the integration (`Route.start`), the one
filter path every response goes through, and the end of the exchange. Integrations talk back only through the
exchange's surface (see `fastgw.pipeline.exchange`); they never see the client connection.
"""
