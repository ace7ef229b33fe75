"""workbench.hailo"""
