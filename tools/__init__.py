"""Operator tools for a deployed environment (its cloud side); device/tool is the board's."""
