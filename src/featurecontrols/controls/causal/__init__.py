"""controls/causal"""
