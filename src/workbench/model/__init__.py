"""workbench.model"""
