"""Spec and status models of the custom resources and their CRD generation."""
