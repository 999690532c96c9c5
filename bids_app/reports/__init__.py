"""Participant reports and the methods boilerplate."""
