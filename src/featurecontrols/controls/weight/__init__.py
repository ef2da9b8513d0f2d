"""controls/weight"""
