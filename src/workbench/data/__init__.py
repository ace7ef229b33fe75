"""workbench.data"""
