"""Thin routers: each endpoint authenticates, calls one service, shapes the answer."""
