"""Strawberry types of the public contract (../shared/API.graphql)."""
