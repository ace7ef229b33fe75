"""workbench.graph"""
