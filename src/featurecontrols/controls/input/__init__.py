"""controls/input"""
