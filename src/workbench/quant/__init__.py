"""workbench.quant"""
