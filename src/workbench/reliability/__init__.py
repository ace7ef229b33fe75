"""workbench.reliability"""
