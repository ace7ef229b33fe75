"""workbench.evaluate"""
